package gc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/gc"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/parts"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/objects"
)

// partBlocks is every block of the metadata parts of the snapshot whose
// manifest is in locs.
func partBlocks(t *testing.T, cat *volume.Catalog, locs []blockstore.Locator) map[blockstore.Locator]bool {
	t.Helper()
	ctx := context.Background()
	var data []byte
	for _, l := range locs {
		b := make([]byte, l.Size)
		if err := blockstore.ReadVerified(ctx, cat.Blocks(), l, b); err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	var m volume.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	out := map[blockstore.Locator]bool{}
	if m.Parts == nil {
		return out
	}
	c := parts.NewCache(cat.Blocks(), parts.CacheOptions{})
	defer c.Close()
	err := c.Reader(m.Parts.Ref).Walk(ctx, func(_ string, r parts.Ref) error {
		for _, l := range r.Blocks {
			out[l] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshotParts lists the part blocks of every snapshot of spec, newest
// first.
func snapshotParts(t *testing.T, spec string) []map[blockstore.Locator]bool {
	t.Helper()
	cat, err := volume.OpenCatalog(context.Background(), spec, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	snaps, err := cat.Snapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []map[blockstore.Locator]bool
	for _, s := range snaps {
		out = append(out, partBlocks(t, cat, s.Manifest))
	}
	return out
}

// TestGCKeepsParts: a collection that frees the parts of the snapshots it
// does not keep keeps every part block of the ones it keeps, and a lazy
// mount of the store serves the whole tree after the sweep.
func TestGCKeepsParts(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "store")
	src := filepath.Join(dir, "src")
	for i := range 6 {
		for j := range 5 {
			fstest.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%d/f%d", i, j)), fstest.RandomBytes(uint64(10*i+j), 3000), 0o644)
		}
	}
	tiny := volume.Options{PartsMaxEntries: 4}
	fstest.ImportWith(t, spec, tiny, src, "/", importer.Options{Chunking: small})
	vol, err := volume.Open(context.Background(), spec, tiny)
	if err != nil {
		t.Fatal(err)
	}
	if err := vol.Meta.MultiWrite([]objects.Entry{tree.DeleteEntry("/d3/f1")}); err != nil {
		t.Fatal(err)
	}
	if err := vol.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	vol.Close()
	snaps := snapshotParts(t, spec)
	if len(snaps[0]) < 5 {
		t.Fatalf("the head has only %d part blocks", len(snaps[0]))
	}
	old := 0
	for l := range snaps[1] {
		if !snaps[0][l] {
			old++
		}
	}
	collect(t, spec, gc.Options{KeepLast: 1})
	rep := collect(t, spec, gc.Options{KeepLast: 1})
	if rep.Freed.Blocks == 0 || old == 0 {
		t.Fatalf("nothing to show: freed %+v, %d part blocks only the old snapshot had", rep.Freed, old)
	}
	cat, err := volume.OpenCatalog(context.Background(), spec, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	for l := range snaps[0] {
		if ok, err := cat.Blocks().Has(context.Background(), l.Hash); err != nil || !ok {
			t.Fatalf("gc deleted part block %s of the snapshot it keeps (%v)", l, err)
		}
	}
	freedOld := 0
	for l := range snaps[1] {
		if ok, _ := cat.Blocks().Has(context.Background(), l.Hash); !ok {
			freedOld++
		}
	}
	if freedOld != old {
		t.Errorf("%d of the %d part blocks only the dropped snapshot had were freed", freedOld, old)
	}
	m := fstest.MountWith(t, spec, volume.Options{Lazy: true}, mount.Options{})
	if !m.Vol.MetaStats().PartsServed {
		t.Fatal("the mount does not serve from parts")
	}
	fstest.Sh(t, "rm", filepath.Join(src, "d3/f1"))
	fstest.CmpTrees(t, src, m.Dir)
}
