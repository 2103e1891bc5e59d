package gc_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/chunker"
	"blockfs/fs/gc"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/objects"
)

func TestMain(m *testing.M) { fstest.Main(m) }

var small = chunker.Config{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}

// rm publishes tombstones for paths, as blockfs rm does.
func rm(t testing.TB, spec string, paths ...string) {
	t.Helper()
	ctx := context.Background()
	vol, err := volume.Open(ctx, spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	var es []objects.Entry
	for _, p := range paths {
		es = append(es, tree.DeleteEntry(p))
	}
	if err := vol.Meta.MultiWrite(es); err != nil {
		t.Fatal(err)
	}
	if err := vol.Publish(ctx); err != nil {
		t.Fatal(err)
	}
}

func collect(t testing.TB, spec string, opts gc.Options) *gc.Report {
	t.Helper()
	ctx := context.Background()
	cat, err := volume.OpenCatalog(ctx, spec, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	rep, err := gc.New(cat, opts).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// verifyHead checks every block of every file of the current snapshot,
// reading and hashing it.
func verifyHead(t testing.TB, spec string) *volume.VerifyReport {
	t.Helper()
	vol, err := volume.Open(context.Background(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	rep, err := vol.Verify(context.Background(), "/", true, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// gate intercepts the importer's Has of one block: it reports the answer,
// then waits to be let go, so a test can run GC in exactly that window.
type gate struct {
	blockstore.Store
	target blockstore.Hash
	once   sync.Once
	asked  chan struct{}
	resume chan struct{}
}

func (g *gate) Unwrap() blockstore.Store { return g.Store }

func (g *gate) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	ok, err := g.Store.Has(ctx, h)
	if h == g.target {
		g.once.Do(func() { close(g.asked); <-g.resume })
	}
	return ok, err
}

// setup makes a store holding file /a, then removes it: its blocks are
// unreachable but present, the case an import deduplicates against.
func setup(t *testing.T) (spec, src string, first blockstore.Locator) {
	dir := t.TempDir()
	spec = filepath.Join(dir, "store")
	src = filepath.Join(dir, "f")
	fstest.WriteFile(t, src, fstest.RandomBytes(7, 300<<10), 0o644)
	fstest.ImportInto(t, spec, src, "/a", small)
	vol, err := volume.Open(context.Background(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := vol.Tree.Lookup("/a")
	vol.Close()
	if err != nil {
		t.Fatal(err)
	}
	rm(t, spec, "/a")
	return spec, src, n.Blocks[0]
}

// gatedImport imports src to /b through a gate on block target, holding a
// lease unless naive; it returns when the importer has asked Has(target),
// and a function that lets it go and waits for it.
func gatedImport(t *testing.T, spec, src string, target blockstore.Hash, lease bool) (finish func() error) {
	return gatedImportAt(t, spec, src, target, lease, false)
}

// gatedImportAt is gatedImport; with afterReuse the gate is after the
// lease's Reuse said yes for target instead of after Has.
func gatedImportAt(t *testing.T, spec, src string, target blockstore.Hash, lease, afterReuse bool) (finish func() error) {
	ctx := context.Background()
	g := &gate{target: target, asked: make(chan struct{}), resume: make(chan struct{})}
	hasTarget := target
	if afterReuse {
		g.target = blockstore.Hash{} // Has passes; Reuse is gated below
	}
	vol, err := volume.Open(ctx, spec, volume.Options{Options: storeurl.Options{WrapBackend: func(s blockstore.Store) blockstore.Store { g.Store = s; return g }}})
	if err != nil {
		t.Fatal(err)
	}
	opts := importer.Options{Chunking: small, Workers: 1}
	var held *gc.Held
	if lease {
		rs, _ := blockstore.As[blockstore.RefStore](vol.Blocks)
		if held, err = gc.Acquire(ctx, vol.Blocks, rs, gc.LeaseOptions{Kind: gc.KindImport}); err != nil {
			t.Fatal(err)
		}
		opts.Reuse = held.Reuse
		if afterReuse {
			opts.Reuse = func(ctx context.Context, h blockstore.Hash) (bool, error) {
				ok, err := held.Reuse(ctx, h)
				if h == hasTarget {
					if !ok || err != nil {
						t.Errorf("Reuse of a condemned block before any sweep: %v, %v", ok, err)
					}
					g.once.Do(func() { close(g.asked); <-g.resume })
				}
				return ok, err
			}
		}
	}
	im, err := importer.New(vol, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := im.Import(ctx, src, "/b")
		if held != nil {
			held.Release(ctx)
		}
		vol.Close()
		done <- err
	}()
	<-g.asked
	return func() error { close(g.resume); return <-done }
}

// TestNaiveGCLosesReusedBlock is the classic race, driven step by step: the
// import finds the removed file's block present and skips uploading it, a
// one-phase mark and sweep deletes it, the import publishes /b anyway. The
// naive collector loses the block; this is what the protocol must prevent.
func TestNaiveGCLosesReusedBlock(t *testing.T) {
	spec, src, first := setup(t)
	finish := gatedImport(t, spec, src, first.Hash, false)
	rep := collect(t, spec, gc.NaiveOptions(gc.Options{KeepLast: 1}))
	if rep.Freed.Blocks == 0 {
		t.Fatal("naive gc freed nothing")
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	v := verifyHead(t, spec)
	if len(v.Missing) == 0 {
		t.Fatalf("naive gc lost no block (verify: %+v): the test does not reproduce the race", v)
	}
	t.Logf("naive gc: /b published with %d missing blocks", len(v.Missing))
}

// TestLeaseFromBeforeCondemnationHoldsSweep: the same interleaving with the
// protocol. The import's lease predates the condemnation, so the sweep is
// deferred while it runs; once it published, /b reaches the block and the
// sweep keeps it.
func TestLeaseFromBeforeCondemnationHoldsSweep(t *testing.T) {
	spec, src, first := setup(t)
	finish := gatedImport(t, spec, src, first.Hash, true)
	opts := gc.Options{KeepLast: 1}
	if rep := collect(t, spec, opts); rep.Condemned.Blocks == 0 {
		t.Fatalf("nothing condemned: %+v", rep)
	}
	rep := collect(t, spec, opts)
	if rep.Freed.Blocks != 0 || rep.Deferred == "" {
		t.Fatalf("sweep ran while an older lease lives: %+v", rep)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	rep = collect(t, spec, opts)
	if rep.Deferred != "" {
		t.Fatalf("sweep still deferred after the import: %s", rep.Deferred)
	}
	if v := verifyHead(t, spec); !v.OK() {
		t.Fatalf("a block /b uses was collected: %+v", v)
	}
	t.Logf("after the import: freed %+v, kept %+v", rep.Freed, rep.Kept)
}

// TestReuseAfterCondemnationHoldsSweep: an import that registers after the
// condemnation and reuses a condemned block marks its lease reusing, which
// holds the sweep off.
func TestReuseAfterCondemnationHoldsSweep(t *testing.T) {
	spec, src, first := setup(t)
	opts := gc.Options{KeepLast: 1}
	if rep := collect(t, spec, opts); rep.Condemned.Blocks == 0 {
		t.Fatalf("nothing condemned: %+v", rep)
	}
	finish := gatedImportAt(t, spec, src, first.Hash, true, true)
	if rep := collect(t, spec, opts); rep.Freed.Blocks != 0 || rep.Deferred == "" {
		t.Fatalf("sweep ran while a lease reuses a condemned block: %+v", rep)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if v := verifyHead(t, spec); !v.OK() {
		t.Fatalf("a block /b uses was collected: %+v", v)
	}
}

// TestSweepBetweenHasAndReuse: the sweep runs after the import's Has said
// the condemned block is there but before the import asked its lease: the
// lease says no, the import looks again, finds it gone and uploads it.
func TestSweepBetweenHasAndReuse(t *testing.T) {
	spec, src, first := setup(t)
	opts := gc.Options{KeepLast: 1}
	collect(t, spec, opts)
	finish := gatedImport(t, spec, src, first.Hash, true)
	rep := collect(t, spec, opts)
	if rep.Freed.Blocks == 0 {
		t.Fatalf("the sweep did not run (a lease registered after the condemnation that reused nothing must not hold it): %+v", rep)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if v := verifyHead(t, spec); !v.OK() {
		t.Fatalf("a block /b uses is missing: %+v", v)
	}
}

// TestDryRunDeletesNothing counts the store's blocks before and after.
func TestDryRunDeletesNothing(t *testing.T) {
	spec, _, _ := setup(t)
	count := func() int {
		n := 0
		filepath.WalkDir(spec, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		return n
	}
	before := count()
	opts := gc.Options{KeepLast: 1, DryRun: true}
	rep := collect(t, spec, opts)
	if rep.Unreachable.Blocks == 0 {
		t.Fatalf("dry run found nothing unreachable: %+v", rep)
	}
	collect(t, spec, gc.Options{KeepLast: 1}) // condemn for real
	mid := count()
	rep = collect(t, spec, opts)
	if rep.Freed.Blocks == 0 {
		t.Fatalf("dry run of a due sweep reports nothing to free: %+v", rep)
	}
	if after := count(); after != mid || mid < before {
		t.Fatalf("files: %d before, %d after condemning, %d after a dry sweep", before, mid, after)
	}
	real := collect(t, spec, gc.Options{KeepLast: 1})
	if real.Freed != rep.Freed {
		t.Fatalf("dry run said %+v, the sweep freed %+v", rep.Freed, real.Freed)
	}
}

// TestAccounting: A and B share blocks; rm B; the sweep frees exactly B's
// unique data bytes plus the manifests of the snapshots no longer retained.
func TestAccounting(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "store")
	a, b := fstest.RandomBytes(1, 1<<20), fstest.RandomBytes(2, 1<<20)
	shared := fstest.RandomBytes(3, 512<<10)
	fstest.WriteFile(t, filepath.Join(dir, "A"), append(append([]byte{}, shared...), a...), 0o644)
	fstest.WriteFile(t, filepath.Join(dir, "B"), append(append([]byte{}, shared...), b...), 0o644)
	fstest.ImportInto(t, spec, filepath.Join(dir, "A"), "/A", small)
	fstest.ImportInto(t, spec, filepath.Join(dir, "B"), "/B", small)
	vol, err := volume.Open(context.Background(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	na, _ := vol.Tree.Lookup("/A")
	nb, _ := vol.Tree.Lookup("/B")
	vol.Close()
	inA := map[blockstore.Hash]bool{}
	for _, l := range na.Blocks {
		inA[l.Hash] = true
	}
	unique := int64(0)
	seen := map[blockstore.Hash]bool{}
	for _, l := range nb.Blocks {
		if !inA[l.Hash] && !seen[l.Hash] {
			unique += l.Size
			seen[l.Hash] = true
		}
	}
	rm(t, spec, "/B")
	cat, err := volume.OpenCatalog(context.Background(), spec, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := cat.Snapshots(context.Background())
	cat.Close()
	if err != nil {
		t.Fatal(err)
	}
	var oldManifests int64
	for _, s := range snaps[1:] { // keep-last 1: every earlier manifest goes
		for _, l := range s.Manifest {
			oldManifests += l.Size
		}
	}
	// ... and so do the metadata parts of those snapshots that the head's
	// parts do not share.
	sp := snapshotParts(t, spec)
	gone := map[blockstore.Locator]bool{}
	for _, ps := range sp[1:] {
		for l := range ps {
			if !sp[0][l] && !gone[l] {
				gone[l] = true
				oldManifests += l.Size
			}
		}
	}
	opts := gc.Options{KeepLast: 1}
	collect(t, spec, opts)
	rep := collect(t, spec, opts)
	if want := unique + oldManifests; rep.Freed.Bytes != want {
		t.Fatalf("freed %d bytes, want B's unique %d + %d of old manifests and parts = %d", rep.Freed.Bytes, unique, oldManifests, want)
	}
	if v := verifyHead(t, spec); !v.OK() || v.Files != 1 {
		t.Fatalf("A does not verify: %+v", v)
	}
	t.Logf("B unique %d bytes, old manifests %d bytes: freed %+v, kept %+v", unique, oldManifests, rep.Freed, rep.Kept)
}

// TestMountLeaseDoesNotHoldSweep: a live mount lease from before the
// condemnation does not defer the sweep (mounts never upload), but the
// generation it names is kept: the sweep marks it again when it starts.
func TestMountLeaseDoesNotHoldSweep(t *testing.T) {
	for _, tc := range []struct {
		name   string
		serves uint64 // the generation the mount's lease names
		freed  bool
	}{
		{"serves the head", 2, true},       // /a (gen 1 only) is collected
		{"serves /a's snapshot", 1, false}, // /a is kept for the mount
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, _, first := setup(t) // /a at generation 1, removed at 2
			ctx := context.Background()
			cat, err := volume.OpenCatalog(ctx, spec, storeurl.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer cat.Close()
			held, err := gc.Acquire(ctx, cat.Blocks(), cat.Refs(), gc.LeaseOptions{Kind: gc.KindMount, AvoidSweep: true})
			if err != nil {
				t.Fatal(err)
			}
			defer held.Release(ctx)
			if err := held.SetSnapshot(ctx, tc.serves, nil); err != nil {
				t.Fatal(err)
			}
			opts := gc.Options{KeepLast: 1}
			collect(t, spec, opts) // condemn (the lease is now older than it)
			rep := collect(t, spec, opts)
			if rep.Deferred != "" {
				t.Fatalf("sweep deferred by a mount's lease: %s", rep.Deferred)
			}
			has, err := cat.Blocks().Has(ctx, first.Hash)
			if err != nil {
				t.Fatal(err)
			}
			if tc.freed == has {
				t.Fatalf("/a's first block present %v after the sweep; the mount serves generation %d", has, tc.serves)
			}
		})
	}
}
