package blockstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// failFirst fails its first n Gets with errBoom (a transient store error).
type failFirst struct {
	Store
	n atomic.Int64
}

func (f *failFirst) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	if f.n.Add(-1) >= 0 {
		return 0, errBoom
	}
	return f.Store.Get(ctx, loc, dst)
}

// TestGetRetriesAFailedPrefetchItJoined: a Get that joined a prefetch
// whose fetch then failed (the store was down when the prefetch asked)
// asks the store once more for itself and gets the block, rather than
// inheriting the prefetch's error; a missing block is not asked for twice.
func TestGetRetriesAFailedPrefetchItJoined(t *testing.T) {
	blocks := testBlocks(1, 1000)
	A := LocatorOf(blocks[0])
	ff := &failFirst{Store: newMemStore(blocks...)}
	ff.n.Store(1)
	gate := newGateStore(ff)
	cs := NewCountingStore(gate)
	p := NewPool(cs, PoolConfig{})
	defer p.Close()

	if !p.Prefetch(A) {
		t.Fatal("prefetch not started")
	}
	<-gate.entered
	got := make(chan error, 1)
	go func() {
		b, err := p.Get(context.Background(), A)
		if err == nil {
			if string(b.Bytes()) != string(blocks[0]) {
				err = errors.New("wrong bytes")
			}
			b.Release()
		}
		got <- err
	}()
	waitFor(t, "the Get to join the prefetch", func() bool { return p.Stats().Shared == 1 })
	gate.open()
	if err := <-got; err != nil {
		t.Fatalf("Get after the prefetch it joined failed: %v, want the block", err)
	}
	if n := cs.GetsOf(A.Hash); n != 2 {
		t.Fatalf("store reads of the block: %d, want 2 (the failed prefetch, the Get's own)", n)
	}

	// A block the store does not have is not asked for again.
	missing := LocatorOf([]byte("not in the store"))
	gate2 := newGateStore(newMemStore())
	cs2 := NewCountingStore(gate2)
	p2 := NewPool(cs2, PoolConfig{})
	defer p2.Close()
	p2.Prefetch(missing)
	<-gate2.entered
	go func() {
		_, err := p2.Get(context.Background(), missing)
		got <- err
	}()
	waitFor(t, "the Get to join the prefetch", func() bool { return p2.Stats().Shared == 1 })
	gate2.open()
	if err := <-got; !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing block: %v, want ErrNotFound", err)
	}
	if n := cs2.GetsOf(missing.Hash); n != 1 {
		t.Fatalf("store reads of a missing block: %d, want 1", n)
	}
}
