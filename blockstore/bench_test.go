package blockstore

import (
	"context"
	"encoding/binary"
	"runtime"
	"sync"
	"testing"
)

// BenchmarkPoolHit is the hot path: Get and Release of a cached block.
func BenchmarkPoolHit(b *testing.B) {
	data := testBlocks(1, 64<<10)[0]
	loc := LocatorOf(data)
	p := NewPool(newMemStore(data), PoolConfig{})
	ctx := context.Background()
	buf, err := p.Get(ctx, loc)
	if err != nil {
		b.Fatal(err)
	}
	buf.Release()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf, err := p.Get(ctx, loc)
		if err != nil {
			b.Fatal(err)
		}
		buf.Release()
	}
}

// BenchmarkPoolParallelHits: many goroutines hitting a set of hot blocks.
func BenchmarkPoolParallelHits(b *testing.B) {
	blocks := testBlocks(64, 4096)
	locs := make([]Locator, len(blocks))
	for i := range blocks {
		locs[i] = LocatorOf(blocks[i])
	}
	p := NewPool(newMemStore(blocks...), PoolConfig{})
	ctx := context.Background()
	for _, loc := range locs {
		buf, err := p.Get(ctx, loc)
		if err != nil {
			b.Fatal(err)
		}
		buf.Release()
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			buf, err := p.Get(ctx, locs[i%len(locs)])
			if err != nil {
				b.Error(err)
				return
			}
			buf.Release()
			i++
		}
	})
}

// BenchmarkPoolSharedWait: per op, 16 goroutines Get one cold block and
// share a single fetch (held at the store until all have joined).
func BenchmarkPoolSharedWait(b *testing.B) {
	const joiners = 16
	store := &gatedStore{release: make(chan []byte)}
	cs := NewCountingStore(store)
	p := NewPool(cs, PoolConfig{MaxBytes: 1 << 20})
	ctx := context.Background()
	start := make([]chan Locator, joiners)
	var done sync.WaitGroup
	for w := range joiners {
		start[w] = make(chan Locator)
		go func() {
			for loc := range start[w] {
				buf, err := p.Get(ctx, loc)
				if err != nil {
					b.Error(err)
				} else {
					buf.Release()
				}
				done.Done()
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	var i uint64
	for b.Loop() {
		i++
		data := binary.BigEndian.AppendUint64(nil, i)
		loc := LocatorOf(data)
		shared := p.Stats().Shared
		done.Add(joiners)
		for _, ch := range start {
			ch <- loc
		}
		for p.Stats().Shared < shared+joiners-1 {
			runtime.Gosched()
		}
		store.release <- data
		done.Wait()
	}
	b.StopTimer()
	for _, ch := range start {
		close(ch)
	}
	b.ReportMetric(float64(cs.Gets())/float64(i), "reads/op")
}

// gatedStore's Get waits for the benchmark to hand it the block's bytes.
type gatedStore struct {
	Store
	release chan []byte
}

func (s *gatedStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	return copy(dst, <-s.release), nil
}

// BenchmarkDirStoreGet reads 1 MiB blocks from a DirStore (page cache warm).
func BenchmarkDirStoreGet(b *testing.B) {
	d := newDir(b)
	ctx := context.Background()
	locs := storeBlocks(b, d, 8, 1<<20)
	dst := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := d.Get(ctx, locs[i%len(locs)], dst); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPoolMissDir is a cold Get through the pool from a DirStore: read
// plus SHA-256 verification of a 1 MiB block, reusing evicted memory.
func BenchmarkPoolMissDir(b *testing.B) {
	d := newDir(b)
	ctx := context.Background()
	locs := storeBlocks(b, d, 8, 1<<20)
	p := NewPool(d, PoolConfig{MaxBytes: 1 << 20}) // one buffer: every Get misses
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		buf, err := p.Get(ctx, locs[i%len(locs)])
		if err != nil {
			b.Fatal(err)
		}
		buf.Release()
		i++
	}
}

// storeBlocks puts n test blocks of size bytes into d and returns them.
func storeBlocks(b *testing.B, d *DirStore, n, size int) []Locator {
	b.Helper()
	var locs []Locator
	for _, data := range testBlocks(n, size) {
		l := LocatorOf(data)
		if err := d.Put(context.Background(), l.Hash, data); err != nil {
			b.Fatal(err)
		}
		locs = append(locs, l)
	}
	return locs
}

// BenchmarkPoolMappedHit is a warm read of a directory-store block the
// pool holds mapped: Get, then (read128k) copy out 128 KiB as a FUSE read
// does, then Release. It measures what the hand-out check of a mapping
// (see Mapping.Unchanged) costs.
func BenchmarkPoolMappedHit(b *testing.B) {
	d := newDir(b)
	locs := storeBlocks(b, d, 1, 1<<20)
	p := NewPool(d, PoolConfig{})
	defer p.Close()
	ctx := context.Background()
	buf, err := p.Get(ctx, locs[0])
	if err != nil {
		b.Fatal(err)
	}
	if buf.unmap == nil {
		b.Fatal("not mapped")
	}
	buf.Release()
	dst := make([]byte, 128<<10)
	for _, n := range []int{0, len(dst)} {
		name := "get"
		if n > 0 {
			name = "read128k"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(n))
			off := 0
			for b.Loop() {
				buf, err := p.Get(ctx, locs[0])
				if err != nil {
					b.Fatal(err)
				}
				copy(dst[:n], buf.Bytes()[off:])
				off = (off + n) % (1 << 20)
				buf.Release()
			}
		})
	}
}
