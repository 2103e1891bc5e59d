package storetest_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
)

func newMem(t *testing.T) blockstore.Store { return storetest.NewMem() }

func newDir(t *testing.T) *blockstore.DirStore {
	t.Helper()
	d, err := blockstore.OpenDir(filepath.Join(t.TempDir(), "store"), true)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMem(t *testing.T) {
	storetest.Run(t, newMem)
	storetest.RunRefs(t, newMem)
}

func TestCountingContract(t *testing.T) {
	over := func(t *testing.T) blockstore.Store { return storetest.NewCounting(newDir(t)) }
	storetest.Run(t, over)
	storetest.RunRefs(t, over)
	inner := newDir(t)
	got := storetest.Capabilities(t, storetest.NewCounting(inner), inner)
	if want := []string{"Mapper", "RefStore", "Flusher", "HashedPutter"}; !slices.Equal(got, want) {
		t.Errorf("a DirStore's capabilities: %v, want %v", got, want)
	}
}

func TestCounting(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	c := storetest.NewCounting(d)
	data := []byte("counted")
	loc := blockstore.LocatorOf(data)
	if err := c.Put(ctx, loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, loc.Size)
	for range 3 {
		if _, err := c.Get(ctx, loc, buf); err != nil {
			t.Fatal(err)
		}
	}
	c.Get(ctx, blockstore.LocatorOf([]byte("missing")), buf)
	if c.Gets() != 4 || c.GetBytes() != 3*loc.Size || c.GetsOf(loc.Hash) != 3 {
		t.Fatalf("counts = %d gets, %d bytes, %d of hash", c.Gets(), c.GetBytes(), c.GetsOf(loc.Hash))
	}
	// A mapping is a read too.
	mp, err := c.Map(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	mp.Unmap()
	if c.Gets() != 5 || c.GetsOf(loc.Hash) != 4 {
		t.Fatalf("after Map: %d gets, %d of hash", c.Gets(), c.GetsOf(loc.Hash))
	}
	c.Reset()
	if c.Gets() != 0 || c.GetBytes() != 0 || c.GetsOf(loc.Hash) != 0 {
		t.Fatal("Reset did not zero")
	}
	// Over a store that cannot map, Map declines and counts nothing.
	m := storetest.NewCounting(storetest.NewMem(data))
	if _, err := m.Map(ctx, loc); err == nil || m.Gets() != 0 {
		t.Fatalf("Map over a Mem: %v, %d gets", err, m.Gets())
	}
}
