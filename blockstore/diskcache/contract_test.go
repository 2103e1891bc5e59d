package diskcache

import (
	"slices"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
)

// TestContract runs the Store and RefStore contracts on a Cache in front
// of a DirStore (refs are the backend's, found through Unwrap), and checks
// that the cache keeps its backend's capabilities besides its own.
func TestContract(t *testing.T) {
	newCache := func(t *testing.T) blockstore.Store {
		d, err := blockstore.OpenDir(t.TempDir(), true)
		if err != nil {
			t.Fatal(err)
		}
		return openCache(t, t.TempDir(), d, Options{MaxBytes: 1 << 20})
	}
	storetest.Run(t, newCache)
	storetest.RunRefs(t, newCache)

	d, err := blockstore.OpenDir(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	c := openCache(t, t.TempDir(), d, Options{MaxBytes: 1 << 20})
	got := storetest.Capabilities(t, c, d)
	if want := []string{"Mapper", "RefStore", "Flusher", "HashedPutter"}; !slices.Equal(got, want) {
		t.Errorf("a DirStore's capabilities: %v, want %v", got, want)
	}
	// The cache is a Mapper and a Keeper itself, not by its backend.
	if m, ok := blockstore.As[blockstore.Mapper](c); !ok || m != blockstore.Mapper(c) {
		t.Errorf("As[Mapper] of a Cache = %T, want the Cache", m)
	}
	if k, ok := blockstore.As[blockstore.Keeper](c); !ok || k != blockstore.Keeper(c) {
		t.Errorf("As[Keeper] of a Cache = %T, want the Cache", k)
	}
	// Over a backend with no Mapper, the cache still maps its hits.
	m := openCache(t, t.TempDir(), storetest.NewMem(), Options{MaxBytes: 1 << 20})
	if _, ok := blockstore.As[blockstore.Mapper](m); !ok {
		t.Error("a Cache over a Mem is no Mapper")
	}
}
