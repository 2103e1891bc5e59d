package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/gc"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// leaseGeneration reads the generation the lease of hm names from the
// store's meta/gc ref (not from hm's own copy).
func leaseGeneration(t *testing.T, hm *heldMount) uint64 {
	t.Helper()
	rs, ok := blockstore.As[blockstore.RefStore](hm.cat.Blocks())
	if !ok {
		t.Fatal("the store has no refs")
	}
	raw, _, err := rs.GetRef(context.Background(), gc.StateRef)
	if err != nil {
		t.Fatal(err)
	}
	var st gc.State
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	id := hm.held.Lease().ID
	for _, l := range st.Leases {
		if l.ID == id {
			return l.Generation
		}
	}
	t.Fatalf("lease %s not in %s", id, gc.StateRef)
	return 0
}

// TestMountLeaseFollowsOpenHandles: a real mount with its gc lease, as
// `blockfs mount` holds it. While a handle is open on the first version of
// a file, an import overwriting it and an rm removing it land and the
// mount refreshes: a renewal (driven here by calling what one tick of
// follow does) still names the handle's generation in meta/gc. After the
// handle closes, the next renewal names the current generation.
func TestMountLeaseFollowsOpenHandles(t *testing.T) {
	testsvc.RequireFUSE(t)
	ctx := context.Background()
	dir := t.TempDir()
	store, src := filepath.Join(dir, "store"), filepath.Join(dir, "src")
	randomFile(t, filepath.Join(src, "f"), 61, 300<<10)
	mustRun(t, "import", "--store", store, src, "/d")
	v1, err := os.ReadFile(filepath.Join(src, "f"))
	if err != nil {
		t.Fatal(err)
	}

	logger := slog.New(slog.DiscardHandler)
	hm, err := mountLease(ctx, store, storeurl.Options{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer hm.release()
	if hm.held == nil {
		t.Fatal("no lease on a directory store")
	}
	vol, err := volume.Open(ctx, store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	hm.serve(ctx, vol)
	m, err := mount.Start(t.TempDir(), vol, mount.Options{Refresh: -1, CacheTimeout: time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { m.Unmount(); m.Wait() }()
	first := vol.MetaStats().Generation
	if got := leaseGeneration(t, hm); got != first {
		t.Fatalf("lease names generation %d at start, want %d", got, first)
	}

	h, err := os.Open(filepath.Join(m.Mountpoint(), "d/f"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	randomFile(t, filepath.Join(src, "f"), 62, 200<<10)
	mustRun(t, "import", "--store", store, src, "/d")
	mustRun(t, "rm", "--store", store, "/d/f")
	if changed, err := vol.Refresh(ctx); err != nil || !changed {
		t.Fatalf("refresh = %v, %v", changed, err)
	}
	current := vol.MetaStats().Generation
	if current < first+2 {
		t.Fatalf("generation %d after an import and an rm since %d", current, first)
	}
	hm.advance(ctx, m.OldestServed())
	if got := leaseGeneration(t, hm); got != first {
		t.Fatalf("with a handle open on generation %d the lease names %d", first, got)
	}
	got := make([]byte, len(v1))
	if _, err := h.ReadAt(got, 0); err != nil || string(got) != string(v1) {
		t.Fatalf("the open handle does not read its version: %v", err)
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, "the kernel's release of the handle", func() bool { return m.OldestServed() == current })
	hm.advance(ctx, m.OldestServed())
	if got := leaseGeneration(t, hm); got != current {
		t.Fatalf("with no handle open the lease names %d, want the current %d", got, current)
	}
}
