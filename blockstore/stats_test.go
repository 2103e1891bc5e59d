package blockstore

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkPartition fails unless s's counters add up as PoolStats promises.
func checkPartition(t *testing.T, s PoolStats) {
	t.Helper()
	if s.Gets != s.Hits+s.Shared+s.Misses {
		t.Errorf("gets %d != hits %d + shared %d + misses %d", s.Gets, s.Hits, s.Shared, s.Misses)
	}
	if s.Fetches != s.DemandFetches+s.Prefetches {
		t.Errorf("fetches %d != demand %d + prefetch %d", s.Fetches, s.DemandFetches, s.Prefetches)
	}
	if s.Prefetches < s.PrefetchUsed+s.PrefetchWasted {
		t.Errorf("prefetches %d < used %d + wasted %d", s.Prefetches, s.PrefetchUsed, s.PrefetchWasted)
	}
	if s.Misses != s.DemandFetches {
		t.Errorf("misses %d != demand fetches %d (no block changed)", s.Misses, s.DemandFetches)
	}
	if s.SavedBytes != s.ReadBytes-s.FetchBytes {
		t.Errorf("saved %d != read %d - fetched %d", s.SavedBytes, s.ReadBytes, s.FetchBytes)
	}
}

// TestPartitionUnderLoad samples the pool's counters continuously while a
// herd of readers (and prefetches) runs through more blocks than the pool
// holds, and checks that every snapshot partitions: not only at rest.
func TestPartitionUnderLoad(t *testing.T) {
	const readers, blocks, size, perReader = 16, 64, 4096, 300
	data := testBlocks(blocks, size)
	locs := make([]Locator, blocks)
	for i, d := range data {
		locs[i] = LocatorOf(d)
	}
	gate := newGateStore(newMemStore(data...))
	p := NewPool(gate, PoolConfig{MaxBytes: blocks / 4 * size, MaxPrefetch: 4})
	defer p.Close()
	ctx := context.Background()

	stop := make(chan struct{})
	var samples, midway atomic.Int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			s := p.Stats()
			checkPartition(t, s)
			samples.Add(1)
			if s.Gets > 0 && s.Gets < readers*perReader {
				midway.Add(1)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()

	var wg sync.WaitGroup
	var okGets atomic.Int64
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for i := range perReader {
				loc := locs[0] // the herd: everyone starts on one block
				if i > 0 {
					loc = locs[rng.IntN(blocks)]
				}
				if i%7 == 0 {
					p.Prefetch(locs[rng.IntN(blocks)])
				}
				b, err := p.Get(ctx, loc)
				if err != nil {
					t.Error(err)
					return
				}
				okGets.Add(1)
				b.Release()
			}
		}()
	}
	<-gate.entered
	waitFor(t, "the herd to join the first fetch", func() bool { return p.Stats().Shared >= readers-1 })
	gate.open()
	go func() { // gateStore announces every fetch; keep its queue moving
		for {
			select {
			case <-gate.entered:
			case <-stop:
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	sampler.Wait()
	assertIdle(t, p)
	s := p.Stats()
	checkPartition(t, s)
	if s.Gets != readers*perReader || s.Gets != okGets.Load() {
		t.Errorf("gets %d, want %d", s.Gets, readers*perReader)
	}
	if s.ReadBytes != s.Gets*size {
		t.Errorf("read %d bytes for %d Gets of %d", s.ReadBytes, s.Gets, size)
	}
	if s.Hits == 0 || s.Shared < readers-1 || s.Misses == 0 || s.Evictions == 0 {
		t.Errorf("load did not exercise every class: %+v", s)
	}
	if midway.Load() == 0 {
		t.Errorf("none of %d samples was taken while readers ran", samples.Load())
	}
	t.Logf("%d samples, %d while readers ran", samples.Load(), midway.Load())
}

// TestWastedPrefetch: with a pool of 4 blocks and 16 blocks prefetched
// ahead, the 12 evicted before any Get asked for them are wasted, the one
// asked for is used, and the pool shows it fetched more than it handed out.
func TestWastedPrefetch(t *testing.T) {
	const size = 4096
	data := testBlocks(16, size)
	p := NewPool(newMemStore(data...), PoolConfig{MaxBytes: 4 * size, MaxPrefetch: 16})
	defer p.Close()
	for _, d := range data {
		done := make(chan struct{})
		if ok, started := p.StartPrefetch(LocatorOf(d), func() { close(done) }); !ok || !started {
			t.Fatalf("prefetch not started: %v %v", ok, started)
		}
		<-done
	}
	waitFor(t, "prefetches to finish", func() bool { return p.Stats().InFlight == 0 })
	get := func(d []byte) {
		b, err := p.Get(context.Background(), LocatorOf(d))
		if err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	get(data[15]) // still held: a hit on a prefetched block
	get(data[0])  // long evicted: a miss, evicting the oldest prefetch
	s := p.Stats()
	checkPartition(t, s)
	if s.Prefetches != 16 || s.PrefetchUsed != 1 || s.PrefetchWasted != 13 {
		t.Errorf("prefetched %d, used %d, wasted %d; want 16, 1, 13", s.Prefetches, s.PrefetchUsed, s.PrefetchWasted)
	}
	if s.Hits != 1 || s.Misses != 1 || s.Fetches != 17 || s.ReadBytes != 2*size || s.FetchBytes != 17*size || s.SavedBytes != -15*size {
		t.Errorf("stats %+v", s)
	}
	get(data[15]) // a second hit on it is not used twice
	if s := p.Stats(); s.PrefetchUsed != 1 || s.Hits != 2 {
		t.Errorf("used %d, hits %d after a second hit; want 1, 2", s.PrefetchUsed, s.Hits)
	}
}

// delayStore delays every Get by a fixed time, like a store far away.
type delayStore struct {
	Store
	d time.Duration
}

func (s delayStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	select {
	case <-time.After(s.d):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return s.Store.Get(ctx, loc, dst)
}

// TestFetchLatency: fetches from a store that takes 20 ms show a p50 of
// 20 to 40 ms; hits add nothing to the fetch histogram.
func TestFetchLatency(t *testing.T) {
	data := testBlocks(10, 1024)
	p := NewPool(delayStore{newMemStore(data...), 20 * time.Millisecond}, PoolConfig{})
	defer p.Close()
	for range 2 {
		for _, d := range data {
			b, err := p.Get(context.Background(), LocatorOf(d))
			if err != nil {
				t.Fatal(err)
			}
			b.Release()
		}
	}
	l := p.Stats().FetchLatency
	if l.Count != 10 {
		t.Fatalf("%d fetches timed, want 10", l.Count)
	}
	if l.P50Seconds < 0.020 || l.P50Seconds > 0.040 {
		t.Errorf("fetch p50 %.1f ms, want 20..40", l.P50Seconds*1e3)
	}
}
