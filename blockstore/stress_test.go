package blockstore

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// chaosStore fails, corrupts and dawdles at random.
type chaosStore struct{ Store }

func (c chaosStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	for range rand.IntN(20) {
		runtime.Gosched()
	}
	switch x := rand.IntN(100); {
	case x < 8:
		return 0, errBoom
	case x < 12:
		n, err := c.Store.Get(ctx, loc, dst)
		if n > 0 {
			dst[rand.IntN(n)] ^= 0x80
		}
		return n, err
	}
	return c.Store.Get(ctx, loc, dst)
}

// Map, for a chaosStore over a Mapper, maps, fails, or declines (so the
// pool copies with Get instead) at random.
func (c chaosStore) Map(ctx context.Context, loc Locator) (*Mapping, error) {
	m, ok := As[Mapper](c.Store)
	switch x := rand.IntN(100); {
	case !ok || x < 25:
		return nil, errNoMap
	case x < 33:
		return nil, errBoom
	}
	return m.Map(ctx, loc)
}

// checkInvariants inspects the pool's internals with the mutex held.
func checkInvariants(t *testing.T, p *Pool) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var held, idle int64
	for loc, b := range p.table {
		if b.loc != loc {
			t.Errorf("buffer for %v filed under %v", b.loc, loc)
		}
		held += b.held
		if b.refs < 0 {
			t.Errorf("negative refs on %v", loc)
		}
		if b.unmap != nil && b.mem != nil {
			t.Errorf("buffer %v is both mapped and in memory", loc)
		}
		if b.refs == 0 && !b.inList() {
			t.Errorf("idle buffer %v not on the LRU list", loc)
		}
	}
	n := 0
	for b := p.lru.root.next; b != &p.lru.root; b = b.next {
		n++
		idle += b.held
		if b.refs != 0 || !b.ready || p.table[b.loc] != b {
			t.Errorf("bad LRU entry %v (refs %d, ready %v)", b.loc, b.refs, b.ready)
		}
	}
	// Abandoned reads keep their memory accounted until they return;
	// stale buffers (out of the table) do not happen here.
	held += p.hungBytes
	if held != p.bytesHeld || idle != p.lruBytes || n != p.lru.n {
		t.Errorf("accounting: held %d vs %d, idle %d vs %d, lru %d vs %d", held, p.bytesHeld, idle, p.lruBytes, n, p.lru.n)
	}
	if p.bytesHeld > p.maxBytes || int64(len(p.table)) != p.c.buffers.Load() || p.c.bytesHeld.Load() != p.bytesHeld {
		t.Errorf("gauges: bytesHeld %d (max %d), table %d vs buffers %d", p.bytesHeld, p.maxBytes, len(p.table), p.c.buffers.Load())
	}
}

func TestPoolStress(t *testing.T) {
	const nBlocks = 48
	r := rand.New(rand.NewPCG(7, 7))
	blocks := make([][]byte, nBlocks)
	locs := make([]Locator, nBlocks)
	for i := range blocks {
		blocks[i] = randBlock(r, 1+r.IntN(16<<10))
		locs[i] = LocatorOf(blocks[i])
	}
	t.Run("copied", func(t *testing.T) {
		stressPool(t, chaosStore{newMemStore(blocks...)}, blocks, locs)
	})
	t.Run("mapped", func(t *testing.T) {
		d := newDir(t)
		putBlocks(t, d, blocks)
		stressPool(t, chaosStore{d}, blocks, locs)
		if n := storeMappings(t, d); n != 0 {
			t.Errorf("%d store files still mapped after Close", n)
		}
	})
}

// stressPool runs 16 workers against a small pool over store for a while
// and checks every result and the pool's bookkeeping.
func stressPool(t *testing.T, store Store, blocks [][]byte, locs []Locator) {
	runFor := time.Second
	if testing.Short() {
		runFor = 200 * time.Millisecond
	}
	const (
		workers  = 16
		maxBytes = 64 << 10
	)
	nBlocks := len(blocks)
	p := NewPool(store, PoolConfig{MaxBytes: maxBytes, MaxWaiters: 8, MaxPrefetch: 2})

	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		ok, errs atomic.Int64
	)
	// Monitor: bytes_held never above MaxBytes, gauges never negative.
	monitorDone := make(chan struct{})
	go func() {
		defer close(monitorDone)
		for !stop.Load() {
			s := p.Stats()
			if s.BytesHeld > s.MaxBytes || s.BytesHeld < 0 || s.BuffersInUse < 0 || s.Waiters < 0 || s.Waiters > 8 {
				t.Errorf("bad stats observed: %+v", s)
				return
			}
			runtime.Gosched()
		}
	}()

	pick := func(r *rand.Rand) int { // skewed, so blocks are often shared
		return min(r.IntN(nBlocks), r.IntN(nBlocks))
	}
	get := func(ctx context.Context, i int) *Buffer {
		b, err := p.Get(ctx, locs[i])
		if err != nil {
			errs.Add(1)
			if !errors.Is(err, errBoom) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrBusy) &&
				!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("unexpected error: %v", err)
			}
			return nil
		}
		if b.Locator() != locs[i] || !bytes.Equal(b.Bytes(), blocks[i]) {
			t.Errorf("wrong bytes for block %d", i)
		}
		ok.Add(1)
		return b
	}
	deadline := time.Now().Add(runFor)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for time.Now().Before(deadline) {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				switch r.IntN(10) {
				case 0:
					ctx, cancel = context.WithCancel(ctx)
					cancel() // already gone
				case 1, 2:
					ctx, cancel = context.WithTimeout(ctx, time.Duration(r.IntN(200))*time.Microsecond)
				}
				if r.IntN(8) == 0 {
					p.Prefetch(locs[pick(r)])
				}
				b := get(ctx, pick(r))
				if b != nil && r.IntN(4) == 0 {
					// Hold two at once; bound the second wait so two
					// holders cannot starve each other forever.
					ctx2, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
					if b2 := get(ctx2, pick(r)); b2 != nil {
						b2.Release()
					}
					cancel2()
				}
				for range r.IntN(10) {
					runtime.Gosched()
				}
				if b != nil {
					b.Release()
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	<-monitorDone
	p.Close()
	assertIdle(t, p)
	checkInvariants(t, p)
	s := p.Stats()
	t.Logf("%d ok, %d errors; stats %+v", ok.Load(), errs.Load(), s)
	if ok.Load() == 0 || s.Hits == 0 || s.VerifyFailures == 0 || s.Errors == 0 || s.Evictions == 0 {
		t.Errorf("stress did not exercise the pool: %+v", s)
	}
}
