package fs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"blockfs/blockstore/s3"
	"blockfs/fs/chunker"
	"blockfs/internal/testsvc"

	"github.com/minio/minio-go/v7"
)

// s3Opts opens stores on the test MinIO through endpoint (MinIO itself or
// a toxiproxy in front of it), with short timeouts so faults resolve fast.
func s3Opts(m *testsvc.MinIO, endpoint string) OpenOptions {
	return OpenOptions{S3: &s3.Config{
		Endpoint: endpoint, AccessKey: m.AccessKey(), SecretKey: m.SecretKey(), PathStyle: true,
		RequestTimeout: 2 * time.Second, MaxAttempts: 3, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}}
}

// TestS3FreshNodeMount: data imported to S3 by one "machine" is listed and
// read by a mount on another that has nothing but the store string.
func TestS3FreshNodeMount(t *testing.T) {
	requireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/cluster/data"
	oo := s3Opts(m, m.Endpoint())
	src := sampleTree(t)
	importWith(t, spec, oo, src, "/data", ImportOptions{})
	tm := mountWith(t, spec, oo, MountOptions{})
	cmpTrees(t, src, tm.path("data"))
	if st := tm.Stats(); st.Meta.Segments == 0 || st.Meta.Generation == 0 {
		t.Errorf("meta stats: %+v", st.Meta)
	}
}

// TestRefreshShowsNewImport: an import that lands while a mount runs shows
// up within the refresh interval, and a file open before a newer import
// replaced it keeps reading the version it opened.
func TestRefreshShowsNewImport(t *testing.T) {
	requireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/live"
	oo := s3Opts(m, m.Endpoint())
	src := t.TempDir()
	v1 := randomBytes(31, 3<<20)
	writeFile(t, filepath.Join(src, "model.bin"), v1, 0o644)
	importWith(t, spec, oo, src, "/models", ImportOptions{})

	refreshed := make(chan bool, 100)
	tm := mountWith(t, spec, oo, MountOptions{
		Refresh: 50 * time.Millisecond, CacheTimeout: time.Millisecond,
		afterRefresh: func(changed bool, err error) {
			if err == nil {
				refreshed <- changed
			}
		},
	})
	old, err := os.Open(tm.path("models/model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// A second machine imports a new tree and a new version of the model.
	later := t.TempDir()
	writeFile(t, filepath.Join(later, "new.txt"), []byte("fresh\n"), 0o644)
	importWith(t, spec, oo, later, "/later", ImportOptions{})
	v2 := randomBytes(32, 2<<20)
	writeFile(t, filepath.Join(src, "model.bin"), v2, 0o644)
	importWith(t, spec, oo, src, "/models", ImportOptions{})

	// Wait for the refresh that brings both imports (one refresh may land
	// between them).
	deadline := time.After(30 * time.Second)
	for {
		n, err := tm.vol.Tree.Lookup("/models/model.bin")
		if err == nil && n.Size == int64(len(v2)) {
			break
		}
		select {
		case <-refreshed:
		case <-deadline:
			t.Fatal("no refresh picked up the new imports")
		}
	}
	if got := sh(t, "cat", tm.path("later/new.txt")); got != "fresh\n" {
		t.Errorf("new file reads %q", got)
	}
	if got := sh(t, "cat", tm.path("models/model.bin")); got != string(v2) {
		t.Error("a fresh open does not see the new version")
	}
	got := make([]byte, len(v1))
	if _, err := old.ReadAt(got, 0); err != nil || !bytes.Equal(got, v1) {
		t.Errorf("the handle opened before the update does not read its version: %v", err)
	}
}

// TestConcurrentImportsBothSurvive: imports racing into one store, each
// publishing after every batch, lose none of each other's files (S3
// conditional writes; a lock file for directories).
func TestConcurrentImportsBothSurvive(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	stores := map[string]OpenOptions{
		filepath.Join(t.TempDir(), "store"):  {},
		"s3://" + m.NewBucket(t) + "/shared": s3Opts(m, m.Endpoint()),
	}
	for spec, oo := range stores {
		t.Run(strings.SplitN(spec, ":", 2)[0], func(t *testing.T) {
			srcs := []string{t.TempDir(), t.TempDir()}
			for i, src := range srcs {
				for j := range 12 {
					writeFile(t, filepath.Join(src, fmt.Sprintf("f%02d", j)), randomBytes(uint64(1000*i+j), 1000+j), 0o644)
				}
			}
			var wg sync.WaitGroup
			for i, src := range srcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					importWith(t, spec, oo, src, fmt.Sprintf("/import-%d", i), ImportOptions{BatchEntries: 2, PublishInterval: -1})
				}()
			}
			wg.Wait()
			vol, err := Open(context.Background(), spec, oo)
			if err != nil {
				t.Fatal(err)
			}
			defer vol.Close()
			for i := range srcs {
				for j := range 12 {
					p := fmt.Sprintf("/import-%d/f%02d", i, j)
					if got := readBack(t, vol, p); !bytes.Equal(got, randomBytes(uint64(1000*i+j), 1000+j)) {
						t.Errorf("%s lost or wrong", p)
					}
				}
			}
		})
	}
}

// TestS3CorruptObjectEIO: an object altered in the bucket fails the reads
// that need it with EIO, is counted, and nothing else breaks.
func TestS3CorruptObjectEIO(t *testing.T) {
	requireFUSE(t)
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	spec := "s3://" + bucket + "/c"
	oo := s3Opts(m, m.Endpoint())
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "bad"), randomBytes(41, 2<<20), 0o644)
	good := randomBytes(42, 2<<20)
	writeFile(t, filepath.Join(src, "good"), good, 0o644)
	importWith(t, spec, oo, src, "/c", ImportOptions{})
	tm := mountWith(t, spec, oo, MountOptions{Logger: discardLogger()})

	victim := tm.blocksOf(t, "/c/bad")[0]
	key := "c/blocks/" + victim.Hash.String()[:2] + "/" + victim.Hash.String()
	junk := randomBytes(43, int(victim.Size))
	if _, err := m.Client().PutObject(context.Background(), bucket, key, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cat", tm.path("c/bad")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Input/output error") {
		t.Fatalf("cat of a corrupted object: %v", err)
	}
	if got := sh(t, "cat", tm.path("c/good")); got != string(good) {
		t.Error("good file broken by a corrupt neighbour")
	}
	if st := tm.statsViaFile(t); st.Pool.VerifyFailures == 0 || st.Fuse.Errors == 0 {
		t.Errorf("corruption not counted: %+v %+v", st.Pool, st.Fuse)
	}
}

// TestS3Faults puts toxiproxy between a mount and MinIO: latency, resets,
// a dead link and its return. Reads succeed after retries or fail with EIO
// within the fetch timeout; they never return wrong bytes or hang the
// mount, and once the link is back the same reads succeed.
func TestS3Faults(t *testing.T) {
	requireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/faults"
	src := t.TempDir()
	files := map[string][]byte{}
	for i := range 6 {
		name := fmt.Sprintf("f%d", i)
		files[name] = randomBytes(uint64(50+i), 1<<20+i)
		writeFile(t, filepath.Join(src, name), files[name], 0o644)
	}
	importWith(t, spec, s3Opts(m, m.Endpoint()), src, "/f", ImportOptions{Chunking: chunker.Config{Avg: 256 << 10}})
	proxy := testsvc.StartProxy(t, m.Host())
	const fetchTimeout = 4 * time.Second
	tm := mountWith(t, spec, s3Opts(m, proxy.Endpoint()), MountOptions{FetchTimeout: fetchTimeout, Refresh: -1, Logger: discardLogger()})

	read := func(name string) (time.Duration, error) {
		start := time.Now()
		out, err := exec.Command("cat", tm.path("f/"+name)).Output()
		if err == nil && !bytes.Equal(out, files[name]) {
			t.Fatalf("%s: wrong bytes", name)
		}
		return time.Since(start), err
	}

	proxy.Latency(20 * time.Millisecond)
	if _, err := read("f0"); err != nil {
		t.Errorf("with 20ms latency: %v", err)
	}
	proxy.Clear()

	proxy.ResetPeerSome(0.3)
	if took, err := read("f1"); err != nil && took > fetchTimeout+5*time.Second {
		t.Errorf("with resets, a read failed only after %v", took)
	}
	proxy.Clear()

	proxy.Down()
	took, err := read("f2")
	if err == nil {
		t.Error("read succeeded with the link down")
	}
	if took > fetchTimeout+5*time.Second {
		t.Errorf("read with the link down took %v, bound %v", took, fetchTimeout)
	}
	sh(t, "ls", "-l", tm.path("f")) // metadata is local: listing still works
	proxy.Up()
	if _, err := read("f2"); err != nil {
		t.Errorf("after the link returned: %v", err)
	}

	proxy.Timeout()
	took, err = read("f3")
	if err == nil {
		t.Error("read succeeded through a black hole")
	}
	if took > fetchTimeout+5*time.Second {
		t.Errorf("read through a black hole took %v", took)
	}
	proxy.Clear()
	for name := range files {
		if _, err := read(name); err != nil {
			t.Errorf("%s after the faults: %v", name, err)
		}
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
	writeFile(t, src, randomBytes(95, 6<<20), 0o644)
	before := m.Requests(t, "headobject")
	st := importWith(t, spec, s3Opts(m, m.Endpoint()), src, "/f", ImportOptions{Chunking: chunker.Config{Fixed: true, Avg: 1 << 20}})
	want := before + st.NewBlocks + st.MetaBlocks
	if got := m.WaitRequests(t, "headobject", want); got != want {
		t.Errorf("%d HEAD requests for %d new blocks and %d metadata blobs", got-before, st.NewBlocks, st.MetaBlocks)
	}
}
