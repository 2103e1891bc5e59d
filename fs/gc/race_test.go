package gc_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/gc"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/volume"
)

// TestRaceImportsWhileGCLoops: imports that deduplicate against files a
// preceding rm made unreachable, while a collector with no grace period
// runs in a loop; afterwards every file of the current snapshot verifies
// deep. The deterministic tests above show a naive collector loses blocks
// in exactly this pattern.
func TestRaceImportsWhileGCLoops(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "store")
	srcs := make([]string, 3)
	for i := range srcs {
		srcs[i] = filepath.Join(dir, fmt.Sprintf("src%d", i))
		fstest.WriteFile(t, srcs[i], fstest.RandomBytes(uint64(100+i), 256<<10), 0o644)
	}
	fstest.ImportInto(t, spec, srcs[0], "/x0", small)
	const rounds = 12
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var runs, freed int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			rep := collect(t, spec, gc.Options{KeepLast: 1})
			runs++
			freed += rep.Freed.Blocks
		}
	}()
	for i := 1; i <= rounds; i++ {
		importLeased(t, spec, srcs[i%len(srcs)], fmt.Sprintf("/x%d", i))
		rm(t, spec, fmt.Sprintf("/x%d", i-1))
	}
	close(stop)
	wg.Wait()
	v := verifyHead(t, spec)
	if !v.OK() || v.Files != 1 {
		t.Fatalf("after %d gc runs: %+v", runs, v)
	}
	t.Logf("%d imports, %d gc runs freed %d blocks; head verifies deep (%d blocks)", rounds, runs, freed, v.Blocks)
}

// importLeased imports as blockfs import does: under a gc lease whose
// Reuse the importer asks.
func importLeased(t testing.TB, spec, src, dest string) {
	t.Helper()
	ctx := context.Background()
	vol, err := volume.Open(ctx, spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	rs, _ := blockstore.As[blockstore.RefStore](vol.Blocks)
	held, err := gc.Acquire(ctx, vol.Blocks, rs, gc.LeaseOptions{Kind: gc.KindImport})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(ctx)
	im, err := importer.New(vol, importer.Options{Chunking: small, Reuse: held.Reuse})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Import(ctx, src, dest); err != nil {
		t.Fatal(err)
	}
}
