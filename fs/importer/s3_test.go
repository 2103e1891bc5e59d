package importer_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// TestConcurrentImportsBothSurvive: imports racing into one store, each
// publishing after every batch, lose none of each other's files (S3
// conditional writes; a lock file for directories).
func TestConcurrentImportsBothSurvive(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	stores := map[string]volume.Options{
		filepath.Join(t.TempDir(), "store"):  {},
		"s3://" + m.NewBucket(t) + "/shared": fstest.S3Options(m, m.Endpoint()),
	}
	for spec, oo := range stores {
		t.Run(strings.SplitN(spec, ":", 2)[0], func(t *testing.T) {
			srcs := []string{t.TempDir(), t.TempDir()}
			for i, src := range srcs {
				for j := range 12 {
					fstest.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%02d", j)), fstest.RandomBytes(uint64(1000*i+j), 1000+j), 0o644)
				}
			}
			var wg sync.WaitGroup
			oo.PartsMaxEntries = 3 // many parts, some shared by both imports' trees
			for i, src := range srcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					fstest.ImportWith(t, spec, oo, src, fmt.Sprintf("/import-%d", i), importer.Options{BatchEntries: 2, PublishInterval: -1})
				}()
			}
			wg.Wait()
			// Both ingesting every segment and reading the metadata parts
			// (built by whichever publish came last, from the log it merged
			// on a conflict) show every file of both.
			lazy := oo
			lazy.Lazy = true
			for _, oo := range []volume.Options{oo, lazy} {
				vol, err := volume.Open(context.Background(), spec, oo)
				if err != nil {
					t.Fatal(err)
				}
				defer vol.Close()
				if oo.Lazy && !vol.MetaStats().PartsServed {
					t.Fatal("the last publish left no parts")
				}
				for i := range srcs {
					for j := range 12 {
						p := fmt.Sprintf("/import-%d/f%02d", i, j)
						if got := fstest.ReadBack(t, vol, p); !bytes.Equal(got, fstest.RandomBytes(uint64(1000*i+j), 1000+j)) {
							t.Errorf("lazy %v: %s lost or wrong", oo.Lazy, p)
						}
					}
				}
			}
		})
	}
}

// TestS3ImportOneHeadPerBlock: importing asks S3 whether each new block
// exists once (Has), not again inside the upload: MinIO's own count of
// HEAD requests is exactly the data blocks plus the metadata blobs (whose
// Put checks for itself).
func TestS3ImportOneHeadPerBlock(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/heads"
	src := filepath.Join(t.TempDir(), "f")
	fstest.WriteFile(t, src, fstest.RandomBytes(95, 6<<20), 0o644)
	before := m.Requests(t, "headobject")
	st := fstest.ImportWith(t, spec, fstest.S3Options(m, m.Endpoint()), src, "/f", importer.Options{Chunking: chunker.Config{Fixed: true, Avg: 1 << 20}})
	want := before + st.NewBlocks + st.MetaBlocks
	if got := m.WaitRequests(t, "headobject", want); got != want {
		t.Errorf("%d HEAD requests for %d new blocks and %d metadata blobs", got-before, st.NewBlocks, st.MetaBlocks)
	}
}

// TestS3PackImportNoHeads: a packing import into S3 asks MinIO about no
// data block (only the metadata blobs, whose Put checks for itself): the
// packs and the blocks of the large files are just PUT, once each. With
// AskStore every large file's block is asked about first, as without
// packing. Both imports store every file readable.
func TestS3PackImportNoHeads(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	src := t.TempDir()
	want := map[string][]byte{}
	for i := range 40 {
		want[fmt.Sprintf("small/f%02d", i)] = fstest.RandomBytes(uint64(300+i), 100+i*50)
	}
	for i := range 3 {
		want[fmt.Sprintf("big%d", i)] = fstest.RandomBytes(uint64(400+i), 200<<10)
	}
	for rel, data := range want {
		fstest.WriteFile(t, filepath.Join(src, rel), data, 0o644)
	}
	for _, ask := range []bool{false, true} {
		spec := "s3://" + m.NewBucket(t) + "/heads"
		oo := fstest.S3Options(m, m.Endpoint())
		heads, puts := m.Requests(t, "headobject"), m.Requests(t, "putobject")
		st := fstest.ImportWith(t, spec, oo, src, "/t", importer.Options{PackBelow: 64 << 10, AskStore: ask})
		wantHeads := heads + st.MetaBlocks
		if ask {
			wantHeads += st.NewBlocks - st.Packs
		}
		if st.Packs == 0 || st.NewBlocks-st.Packs != 3 {
			t.Fatalf("ask %v: %d packs, %d new blocks: not the tree this test is about", ask, st.Packs, st.NewBlocks)
		}
		if got := m.WaitRequests(t, "headobject", wantHeads); got != wantHeads {
			t.Errorf("ask %v: %d HEADs for %d new blocks (%d packs) and %d metadata blobs, want %d", ask, got-heads, st.NewBlocks, st.Packs, st.MetaBlocks, wantHeads-heads)
		}
		if got := m.WaitRequests(t, "putobject", puts+st.NewBlocks+st.MetaBlocks); got-puts < st.NewBlocks {
			t.Errorf("ask %v: %d PUTs for %d new blocks", ask, got-puts, st.NewBlocks)
		}
		vol, err := volume.Open(context.Background(), spec, oo)
		if err != nil {
			t.Fatal(err)
		}
		for rel, data := range want {
			if got := fstest.ReadBack(t, vol, "/t/"+rel); !bytes.Equal(got, data) {
				t.Errorf("ask %v: %s reads back wrong", ask, rel)
			}
		}
		vol.Close()
	}
}
