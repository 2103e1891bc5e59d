package diskcache

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"blockfs/blockstore"
)

// The cache keeps only what its reader verified and handed back: a plain
// Get of a miss caches nothing, Keep does, and Keep of a cached block is a
// no-op.
func TestKeepIsTheWayIn(t *testing.T) {
	back := newBackend(t)
	loc := putBlocks(t, back, 1, 3000, 21, false)[0]
	c := openCache(t, t.TempDir(), back, Options{MaxBytes: 1 << 20})
	buf := make([]byte, loc.Size)
	if _, err := c.Get(ctx, loc, buf); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Misses != 1 || st.Inserts != 0 || st.Entries != 0 {
		t.Fatalf("a Get alone cached the block: %+v", st)
	}
	c.Keep(loc, buf)
	c.Keep(loc, buf)
	c.Keep(blockstore.Locator{Hash: loc.Hash, Size: loc.Size + 1}, buf) // wrong length: ignored
	if st := c.Stats(); st.Inserts != 1 || st.Entries != 1 {
		t.Fatalf("after Keep: %+v", st)
	}
	get(t, c, loc)
	if st := c.Stats(); st.Hits != 1 || back.Gets() != 1 {
		t.Fatalf("not a hit: %+v, backend reads %d", st, back.Gets())
	}
}

// mapped reports whether the cache file of loc is mapped into this process.
func mapped(t *testing.T, c *Cache, loc blockstore.Locator) bool {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(maps), c.path(loc.Hash))
}

// Through a Pool, as blockfs reads: a miss goes to the backend once and is
// kept; a hit in a fresh pool is mapped in place; a damaged file is
// dropped, and the block comes from the backend again, intact.
func TestPoolOverCacheMapsHits(t *testing.T) {
	back := newBackend(t)
	loc := putBlocks(t, back, 1, 5000, 22, false)[0]
	c := openCache(t, t.TempDir(), back, Options{MaxBytes: 1 << 20})
	read := func() []byte {
		p := blockstore.NewPool(c, blockstore.PoolConfig{})
		defer p.Close()
		b, err := p.Get(ctx, loc)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Release()
		if blockstore.Sum(b.Bytes()) != loc.Hash {
			t.Fatal("wrong bytes")
		}
		if mapped(t, c, loc) != (c.Stats().Hits > 0 && back.Gets() == 1) {
			t.Errorf("mapped %v, stats %+v, backend reads %d", mapped(t, c, loc), c.Stats(), back.Gets())
		}
		return bytes.Clone(b.Bytes())
	}
	read() // miss: backend, then kept
	if st := c.Stats(); st.Misses != 1 || st.Inserts != 1 || back.Gets() != 1 {
		t.Fatalf("after the first read: %+v, backend reads %d", st, back.Gets())
	}
	read() // hit, mapped
	if st := c.Stats(); st.Hits != 1 || back.Gets() != 1 {
		t.Fatalf("after the second read: %+v, backend reads %d", st, back.Gets())
	}
	if err := flip(c.path(loc.Hash), 100); err != nil {
		t.Fatal(err)
	}
	read() // damaged: dropped, refetched, kept again
	if st := c.Stats(); st.CorruptDropped != 1 || st.Misses != 2 || st.Inserts != 2 || back.Gets() != 2 {
		t.Fatalf("after damage: %+v, backend reads %d", st, back.Gets())
	}
	if mapped(t, c, loc) {
		t.Fatal("still mapped after every pool closed")
	}
}
