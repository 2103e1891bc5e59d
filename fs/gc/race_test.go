package gc_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/gc"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

// store is a store spec and the options that open it.
type store struct {
	spec string
	oo   volume.Options
}

// TestRaceImportsWhileGCLoops: imports that deduplicate against files a
// preceding rm made unreachable (three sources, cycled, so every import
// after the third reuses the blocks of a removed file), tags now and then,
// while a collector with no grace period runs in a loop; afterwards every
// file of every retained snapshot (the head and each tag) verifies deep.
// On a directory store and on the real MinIO (batch deletes, fan-out
// listing). The deterministic tests in gc_test.go show a naive collector
// loses blocks in exactly this pattern.
func TestRaceImportsWhileGCLoops(t *testing.T) {
	t.Run("dir", func(t *testing.T) {
		raceImportsWhileGC(t, store{spec: filepath.Join(t.TempDir(), "store")}, 12)
	})
	t.Run("s3", func(t *testing.T) {
		m := testsvc.SharedMinIO(t)
		raceImportsWhileGC(t, store{spec: "s3://" + m.NewBucket(t) + "/race", oo: fstest.S3Options(m, m.Endpoint())}, 8)
	})
}

func raceImportsWhileGC(t *testing.T, st store, rounds int) {
	ctx := context.Background()
	dir := t.TempDir()
	srcs := make([]string, 3)
	for i := range srcs {
		srcs[i] = filepath.Join(dir, fmt.Sprintf("src%d", i))
		fstest.WriteFile(t, srcs[i], fstest.RandomBytes(uint64(100+i), 256<<10), 0o644)
	}
	fstest.ImportWith(t, st.spec, st.oo, srcs[0], "/x0", importer.Options{Chunking: small})
	stop := make(chan struct{})
	type result struct {
		runs, freed int64
		err         error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		for r.runs < 500 { // bounded even if the imports stall
			select {
			case <-stop:
				return
			default:
			}
			rep, err := runGC(ctx, st, gc.Options{KeepLast: 1})
			if err != nil {
				r.err = fmt.Errorf("gc run %d: %w", r.runs, err)
				return
			}
			r.runs++
			r.freed += rep.Freed.Blocks
		}
	}()
	var tags []string
	var err error
	for i := 1; i <= rounds && err == nil; i++ {
		if err = importLeasedErr(ctx, st, srcs[i%len(srcs)], fmt.Sprintf("/x%d", i)); err != nil {
			err = fmt.Errorf("import %d: %w", i, err)
		} else if err = rmErr(ctx, st, fmt.Sprintf("/x%d", i-1)); err != nil {
			err = fmt.Errorf("rm %d: %w", i-1, err)
		}
		if err == nil && i%3 == 0 {
			name := "t" + strconv.Itoa(i)
			if err = tagLeased(ctx, st, name); err != nil {
				err = fmt.Errorf("tag %s: %w", name, err)
			}
			tags = append(tags, name)
		}
	}
	close(stop)
	r := <-done
	if err != nil || r.err != nil {
		t.Fatalf("import/rm/tag: %v; gc: %v", err, r.err)
	}
	if r.freed == 0 {
		t.Errorf("%d gc runs freed nothing: the race was not exercised", r.runs)
	}
	for _, at := range append([]string{""}, tags...) {
		v, err := verifyAt(ctx, st, at)
		if err != nil || !v.OK() || v.Files != 1 {
			t.Errorf("after %d gc runs, snapshot %q: %+v, %v", r.runs, at, v, err)
		}
	}
	t.Logf("%d imports, %d gc runs freed %d blocks; the head and %d tags verify deep", rounds, r.runs, r.freed, len(tags))
}

func runGC(ctx context.Context, st store, opts gc.Options) (*gc.Report, error) {
	cat, err := volume.OpenCatalog(ctx, st.spec, st.oo.Options)
	if err != nil {
		return nil, err
	}
	defer cat.Close()
	return gc.New(cat, opts).Run(ctx)
}

// importLeasedErr imports as blockfs import does: under a gc lease whose
// Reuse the importer asks, publishing under the lease's context.
func importLeasedErr(ctx context.Context, st store, src, dest string) error {
	vol, err := volume.Open(ctx, st.spec, st.oo)
	if err != nil {
		return err
	}
	defer vol.Close()
	rs, _ := blockstore.As[blockstore.RefStore](vol.Blocks)
	held, err := gc.Acquire(ctx, vol.Blocks, rs, gc.LeaseOptions{Kind: gc.KindImport})
	if err != nil {
		return err
	}
	defer held.Release(ctx)
	ictx, cancel := held.Bind(ctx)
	defer cancel()
	im, err := importer.New(vol, importer.Options{Chunking: small, Reuse: held.Reuse})
	if err != nil {
		return err
	}
	_, err = im.Import(ictx, src, dest)
	return err
}

// rmErr removes paths as blockfs rm does: under a lease registered before
// the tombstones' segment is written (without one, a sweep may delete
// that segment before it is published: this test found that).
func rmErr(ctx context.Context, st store, paths ...string) error {
	vol, err := volume.Open(ctx, st.spec, st.oo)
	if err != nil {
		return err
	}
	defer vol.Close()
	rs, _ := blockstore.As[blockstore.RefStore](vol.Blocks)
	held, err := gc.Acquire(ctx, vol.Blocks, rs, gc.LeaseOptions{Kind: gc.KindImport})
	if err != nil {
		return err
	}
	defer held.Release(ctx)
	ctx, cancel := held.Bind(ctx)
	defer cancel()
	var es []objects.Entry
	for _, p := range paths {
		es = append(es, tree.DeleteEntry(p))
	}
	if err := vol.Meta.MultiWrite(es); err != nil {
		return err
	}
	return vol.Publish(ctx)
}

// tagLeased tags the current snapshot as blockfs tag does: under a
// reusing catalog lease taken after any live sweep.
func tagLeased(ctx context.Context, st store, name string) error {
	cat, err := volume.OpenCatalog(ctx, st.spec, st.oo.Options)
	if err != nil {
		return err
	}
	defer cat.Close()
	held, err := gc.Acquire(ctx, cat.Blocks(), cat.Refs(), gc.LeaseOptions{Kind: gc.KindCatalog, Reusing: true, AvoidSweep: true})
	if err != nil {
		return err
	}
	defer held.Release(ctx)
	_, err = cat.Tag(ctx, name, "")
	return err
}

// verifyAt checks every block of every file of snapshot at ("" is the
// current one), reading and hashing it.
func verifyAt(ctx context.Context, st store, at string) (*volume.VerifyReport, error) {
	oo := st.oo
	oo.At = at
	vol, err := volume.Open(ctx, st.spec, oo)
	if err != nil {
		return nil, err
	}
	defer vol.Close()
	return vol.Verify(ctx, "/", true, 4, nil)
}
