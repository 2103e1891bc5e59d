package blockstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// storeMappings counts the files under d's root mapped into this process,
// as the kernel lists them in /proc/self/maps.
func storeMappings(t *testing.T, d *DirStore) int {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(maps), d.root+"/")
}

func putBlocks(t *testing.T, d *DirStore, blocks [][]byte) []Locator {
	t.Helper()
	var locs []Locator
	for _, b := range blocks {
		loc := LocatorOf(b)
		if err := d.Put(context.Background(), loc.Hash, b); err != nil {
			t.Fatal(err)
		}
		locs = append(locs, loc)
	}
	return locs
}

// A pool over a directory store serves blocks mapped in place, unmaps
// them when it evicts them and when it is closed, and counts a mapping as
// one store read.
func TestPoolMapsDirStore(t *testing.T) {
	d := newDir(t)
	blocks := testBlocks(6, 64<<10)
	locs := putBlocks(t, d, blocks)
	cs := NewCountingStore(d)
	p := NewPool(cs, PoolConfig{MaxBytes: 3 * 64 << 10})
	for i, loc := range locs {
		b, err := p.Get(context.Background(), loc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), blocks[i]) {
			t.Fatalf("block %d: wrong bytes", i)
		}
		if b.unmap == nil || b.mem != nil {
			t.Fatalf("block %d was copied, not mapped", i)
		}
		b.Release()
		// Room for three blocks: older ones are evicted and unmapped.
		if n := storeMappings(t, d); n != min(i+1, 3) {
			t.Fatalf("after block %d: %d store files mapped, want %d", i, n, min(i+1, 3))
		}
	}
	if cs.Gets() != int64(len(locs)) {
		t.Fatalf("%d store reads for %d blocks", cs.Gets(), len(locs))
	}
	// A hit is served by the mapping already there.
	b, err := p.Get(context.Background(), locs[len(locs)-1])
	if err != nil || !bytes.Equal(b.Bytes(), blocks[len(blocks)-1]) {
		t.Fatal("hit on a mapped block failed", err)
	}
	b.Release()
	if cs.Gets() != int64(len(locs)) || p.Stats().Hits != 1 {
		t.Fatalf("hit reached the store: %d reads, %+v", cs.Gets(), p.Stats())
	}
	assertIdle(t, p)
	p.Close()
	if n := storeMappings(t, d); n != 0 {
		t.Fatalf("%d store files still mapped after Close", n)
	}
	if s := p.Stats(); s.BytesHeld != 0 || s.Buffers != 0 {
		t.Fatalf("after Close: %+v", s)
	}
}

// A mapped block that does not hash to its name is never served or
// cached, and its mapping does not outlive the failed fetch.
func TestPoolMappedCorrupt(t *testing.T) {
	d := newDir(t)
	blocks := testBlocks(2, 8192)
	locs := putBlocks(t, d, blocks)
	damaged := bytes.Clone(blocks[0])
	damaged[4000] ^= 1
	if err := os.Chmod(d.path(locs[0].Hash), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.path(locs[0].Hash), damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	p := NewPool(d, PoolConfig{})
	for range 2 { // the failure is not cached: the second Get tries again
		if _, err := p.Get(context.Background(), locs[0]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Get of a damaged block: %v, want ErrCorrupt", err)
		}
	}
	if n := storeMappings(t, d); n != 0 {
		t.Fatalf("%d store files mapped after failed fetches", n)
	}
	b, err := p.Get(context.Background(), locs[1])
	if err != nil || !bytes.Equal(b.Bytes(), blocks[1]) {
		t.Fatal("neighbour of a damaged block:", err)
	}
	b.Release()
	if s := p.Stats(); s.VerifyFailures != 2 || s.Errors != 2 || s.Buffers != 1 {
		t.Fatalf("stats %+v", s)
	}
	assertIdle(t, p)
}

// Where mapping is not possible (mlock refused), the pool copies with Get;
// memory reused from a copied buffer for a mapped one is accounted as the
// mapped block alone.
func TestPoolMapFallback(t *testing.T) {
	d := newDir(t)
	blocks := [][]byte{testBlocks(1, 8192)[0], testBlocks(1, 6000)[0]}
	locs := putBlocks(t, d, blocks)
	d.noMap.Store(true)
	p := NewPool(d, PoolConfig{MaxBytes: 8192})
	b, err := p.Get(context.Background(), locs[0])
	if err != nil || !bytes.Equal(b.Bytes(), blocks[0]) {
		t.Fatal(err)
	}
	if b.unmap != nil || b.mem == nil {
		t.Fatal("mapped although mapping is off")
	}
	b.Release()
	d.noMap.Store(false)
	// The second block evicts the first and takes its 8192 bytes of
	// memory, but is mapped instead.
	b, err = p.Get(context.Background(), locs[1])
	if err != nil || !bytes.Equal(b.Bytes(), blocks[1]) {
		t.Fatal(err)
	}
	if b.unmap == nil {
		t.Fatal("not mapped")
	}
	b.Release()
	if s := p.Stats(); s.BytesHeld != 6000 || s.Evictions != 1 {
		t.Fatalf("stats %+v", s)
	}
	assertIdle(t, p)
	p.Close()
}
