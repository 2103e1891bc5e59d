package blockstore

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"blockfs/internal/testsvc"
)

// waitFor waits until cond holds (see testsvc.WaitFor).
var waitFor = testsvc.WaitFor

func randBlock(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testBlocks(n, size int) [][]byte {
	r := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	out := make([][]byte, n)
	for i := range out {
		out[i] = randBlock(r, size)
	}
	return out
}

type result struct {
	b   *Buffer
	err error
}

// getAsync starts a Get and returns a channel for its outcome.
func getAsync(ctx context.Context, p *Pool, loc Locator) chan result {
	ch := make(chan result, 1)
	go func() {
		b, err := p.Get(ctx, loc)
		ch <- result{b, err}
	}()
	return ch
}

func assertIdle(t *testing.T, p *Pool) {
	t.Helper()
	waitFor(t, "no buffers in use", func() bool { return p.Stats().BuffersInUse == 0 })
	if s := p.Stats(); s.Waiters != 0 || s.BytesHeld > s.MaxBytes {
		t.Fatalf("pool not idle: %+v", s)
	}
	checkInvariants(t, p)
}

func TestPoolSharedFetch(t *testing.T) {
	const N = 64
	data := testBlocks(1, 4096)[0]
	loc := LocatorOf(data)
	gate := newGateStore(newMemStore(data))
	cs := NewCountingStore(gate)
	p := NewPool(cs, PoolConfig{})

	results := make([]chan result, N)
	for i := range results {
		results[i] = getAsync(context.Background(), p, loc)
	}
	<-gate.entered
	waitFor(t, "all callers to join the fetch", func() bool { return p.Stats().Shared == N-1 })
	gate.open()
	var first *Buffer
	for _, ch := range results {
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !bytes.Equal(r.b.Bytes(), data) || r.b.Locator() != loc {
			t.Fatal("wrong data")
		}
		if first == nil {
			first = r.b
		} else if r.b != first {
			t.Fatal("callers got different buffers")
		}
	}
	for range N {
		first.Release()
	}
	if got := cs.Gets(); got != 1 {
		t.Fatalf("store reads = %d, want 1", got)
	}
	// Consecutive Gets after release are hits.
	for range 10 {
		b, err := p.Get(context.Background(), loc)
		if err != nil || !bytes.Equal(b.Bytes(), data) {
			t.Fatal(err)
		}
		b.Release()
	}
	s := p.Stats()
	if cs.GetsOf(loc.Hash) != 1 || s.Hits != 10 || s.Fetches != 1 || s.Gets != N+10 || s.FetchBytes != loc.Size {
		t.Fatalf("store reads %d, stats %+v", cs.GetsOf(loc.Hash), s)
	}
	assertIdle(t, p)
	if s.Buffers != 1 || s.BytesHeld != loc.Size {
		t.Fatalf("cached block not held: %+v", s)
	}
}

func TestPoolFailedFetchShared(t *testing.T) {
	const N = 64
	data := testBlocks(1, 1000)[0]
	loc := LocatorOf(data)
	fail := &failStore{Store: newMemStore(data)}
	fail.failing.Store(true)
	gate := newGateStore(fail)
	cs := NewCountingStore(gate)
	p := NewPool(cs, PoolConfig{})

	results := make([]chan result, N)
	for i := range results {
		results[i] = getAsync(context.Background(), p, loc)
	}
	<-gate.entered
	waitFor(t, "all callers to join the fetch", func() bool { return p.Stats().Shared == N-1 })
	gate.open()
	for _, ch := range results {
		if r := <-ch; !errors.Is(r.err, errBoom) || r.b != nil {
			t.Fatalf("Get = %v, %v; want errBoom", r.b, r.err)
		}
	}
	s := p.Stats()
	if s.Errors != 1 || s.Fetches != 1 || s.Buffers != 0 || s.BytesHeld != 0 || s.BuffersInUse != 0 {
		t.Fatalf("after failed fetch: %+v", s)
	}
	// Nothing was left under the hash: the next Get fetches again.
	fail.failing.Store(false)
	b, err := p.Get(context.Background(), loc)
	if err != nil || !bytes.Equal(b.Bytes(), data) {
		t.Fatalf("retry: %v", err)
	}
	b.Release()
	if cs.Gets() != 2 {
		t.Fatalf("store reads = %d, want 2", cs.Gets())
	}
}

func TestPoolCorrupt(t *testing.T) {
	data := testBlocks(1, 1000)[0]
	loc := LocatorOf(data)
	cs := NewCountingStore(corruptStore{newMemStore(data)})
	p := NewPool(cs, PoolConfig{})
	for i := range 2 {
		if _, err := p.Get(context.Background(), loc); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Get(corrupt) err = %v, want ErrCorrupt", err)
		}
		if cs.Gets() != int64(i+1) {
			t.Fatal("corrupt block was cached")
		}
	}
	s := p.Stats()
	if s.VerifyFailures != 2 || s.Errors != 2 || s.Buffers != 0 || s.BytesHeld != 0 {
		t.Fatalf("stats %+v", s)
	}
	// A store that returns too few bytes is caught as well.
	p2 := NewPool(newMemStore(data), PoolConfig{})
	if _, err := p2.Get(context.Background(), Locator{loc.Hash, loc.Size + 1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short read err = %v, want ErrCorrupt", err)
	}
}

func TestPoolNotFound(t *testing.T) {
	p := NewPool(newMemStore(), PoolConfig{})
	if _, err := p.Get(context.Background(), LocatorOf([]byte("x"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	assertIdle(t, p)
}

func TestPoolBadLocators(t *testing.T) {
	p := NewPool(newMemStore(), PoolConfig{MaxBytes: 1000})
	cases := []struct {
		loc  Locator
		want error
	}{
		{Locator{Size: -1}, ErrMalformed},
		{Locator{Size: 1001}, ErrTooLarge},
		{Locator{Size: MaxBlockSize + 1}, ErrTooLarge},
	}
	for _, c := range cases {
		if _, err := p.Get(context.Background(), c.loc); !errors.Is(err, c.want) {
			t.Errorf("Get(%v) err = %v, want %v", c.loc, err, c.want)
		}
		if p.Prefetch(c.loc) {
			t.Errorf("Prefetch(%v) = true", c.loc)
		}
	}
}

func TestPoolWaitForBuffer(t *testing.T) {
	const k = 3
	blocks := testBlocks(k+2, 1024)
	cs := NewCountingStore(newMemStore(blocks...))
	p := NewPool(cs, PoolConfig{MaxBytes: k * 1024, MaxWaiters: 1})
	ctx := context.Background()
	var held []*Buffer
	for _, b := range blocks[:k] {
		buf, err := p.Get(ctx, LocatorOf(b))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, buf)
	}
	waiting := getAsync(ctx, p, LocatorOf(blocks[k]))
	waitFor(t, "a waiter", func() bool { return p.Stats().Waiters == 1 })
	select {
	case r := <-waiting:
		t.Fatalf("Get did not wait: %v", r.err)
	default:
	}
	// Past the waiter limit: ErrBusy at once.
	if _, err := p.Get(ctx, LocatorOf(blocks[k+1])); !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	// A hit needs no memory, so it neither waits nor is refused.
	if b, err := p.Get(ctx, LocatorOf(blocks[0])); err != nil {
		t.Fatal(err)
	} else {
		b.Release()
	}
	held[1].Release()
	r := <-waiting
	if r.err != nil || !bytes.Equal(r.b.Bytes(), blocks[k]) {
		t.Fatalf("waiter: %v", r.err)
	}
	s := p.Stats()
	if s.Busy != 1 || s.Evictions != 1 || s.BytesHeld != k*1024 || s.Waiters != 0 {
		t.Fatalf("stats %+v", s)
	}
	r.b.Release()
	held[0].Release()
	held[2].Release()
	assertIdle(t, p)

	// With MaxWaiters < 0 nobody waits.
	p2 := NewPool(cs, PoolConfig{MaxBytes: 1024, MaxWaiters: -1})
	b, err := p2.Get(ctx, LocatorOf(blocks[0]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Get(ctx, LocatorOf(blocks[1])); !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	b.Release()
}

// TryGet never waits for memory, but takes hits and joins fetches in
// flight like Get.
func TestPoolTryGet(t *testing.T) {
	blocks := testBlocks(3, 1024)
	A, B, C := LocatorOf(blocks[0]), LocatorOf(blocks[1]), LocatorOf(blocks[2])
	gate := newGateStore(newMemStore(blocks...))
	p := NewPool(gate, PoolConfig{MaxBytes: 2048})
	ctx := context.Background()
	inflight := getAsync(ctx, p, B) // B's fetch holds its memory, gated
	<-gate.entered
	gate.open()
	a, err := p.Get(ctx, A)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.TryGet(ctx, B) // in flight or done: joined, not refused
	if err != nil || !bytes.Equal(b.Bytes(), blocks[1]) {
		t.Fatal("TryGet of a block in the pool:", err)
	}
	// Every byte is held: C could only be had by waiting.
	if _, err := p.TryGet(ctx, C); !errors.Is(err, ErrWouldWait) {
		t.Fatalf("TryGet with no free memory: %v, want ErrWouldWait", err)
	}
	if s := p.Stats(); s.Waiters != 0 || s.Busy != 0 || s.Gets != 3 {
		t.Fatalf("a refused TryGet left a trace: %+v", s)
	}
	b.Release()
	(<-inflight).b.Release()
	c, err := p.TryGet(ctx, C) // B is idle now: evicted for C
	if err != nil || !bytes.Equal(c.Bytes(), blocks[2]) {
		t.Fatal("TryGet with an evictable buffer:", err)
	}
	c.Release()
	a.Release()
	assertIdle(t, p)
}

func TestPoolCancelMemoryWaiter(t *testing.T) {
	blocks := testBlocks(2, 100)
	p := NewPool(newMemStore(blocks...), PoolConfig{MaxBytes: 100})
	b, err := p.Get(context.Background(), LocatorOf(blocks[0]))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waiting := getAsync(ctx, p, LocatorOf(blocks[1]))
	waitFor(t, "a waiter", func() bool { return p.Stats().Waiters == 1 })
	cancel()
	if r := <-waiting; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", r.err)
	}
	b.Release()
	assertIdle(t, p)
}

// TestPoolCancel cancels, in turn, the caller that started the fetch and a
// caller that joined it; neither disturbs the fetch for the other.
func TestPoolCancel(t *testing.T) {
	for _, cancelFirst := range []bool{true, false} {
		data := testBlocks(1, 2048)[0]
		loc := LocatorOf(data)
		gate := newGateStore(newMemStore(data))
		cs := NewCountingStore(gate)
		p := NewPool(cs, PoolConfig{})

		ctx1, cancel1 := context.WithCancel(context.Background())
		ctx2, cancel2 := context.WithCancel(context.Background())
		r1 := getAsync(ctx1, p, loc)
		<-gate.entered
		r2 := getAsync(ctx2, p, loc)
		waitFor(t, "second caller to join", func() bool { return p.Stats().Shared == 1 })
		cancelled, survivor := r1, r2
		if cancelFirst {
			cancel1()
		} else {
			cancel2()
			cancelled, survivor = r2, r1
		}
		if r := <-cancelled; !errors.Is(r.err, context.Canceled) || r.b != nil {
			t.Fatalf("cancelled caller: %v", r.err)
		}
		gate.open()
		r := <-survivor
		if r.err != nil || !bytes.Equal(r.b.Bytes(), data) {
			t.Fatalf("surviving caller: %v", r.err)
		}
		r.b.Release()
		if gate.ctxErrs.Load() != 0 || cs.Gets() != 1 {
			t.Fatal("fetch was disturbed")
		}
		cancel1()
		cancel2()
		assertIdle(t, p)
	}
}

// TestPoolAllCallersGone: even if every caller gives up, the fetch finishes
// and its block is cached.
func TestPoolAllCallersGone(t *testing.T) {
	data := testBlocks(1, 2048)[0]
	loc := LocatorOf(data)
	gate := newGateStore(newMemStore(data))
	cs := NewCountingStore(gate)
	p := NewPool(cs, PoolConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	r := getAsync(ctx, p, loc)
	<-gate.entered
	cancel()
	if res := <-r; !errors.Is(res.err, context.Canceled) {
		t.Fatal(res.err)
	}
	gate.open()
	assertIdle(t, p)
	b, err := p.Get(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	b.Release()
	if cs.Gets() != 1 || p.Stats().Hits != 1 {
		t.Fatalf("store reads %d, stats %+v", cs.Gets(), p.Stats())
	}
}

func TestPoolFetchTimeout(t *testing.T) {
	data := testBlocks(1, 10)[0]
	gate := newGateStore(newMemStore(data)) // never opened
	p := NewPool(gate, PoolConfig{FetchTimeout: 20 * time.Millisecond})
	if _, err := p.Get(context.Background(), LocatorOf(data)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if s := p.Stats(); s.Errors != 1 || s.Buffers != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPoolLRU(t *testing.T) {
	blocks := testBlocks(3, 1024)
	A, B, C := LocatorOf(blocks[0]), LocatorOf(blocks[1]), LocatorOf(blocks[2])
	cs := NewCountingStore(newMemStore(blocks...))
	p := NewPool(cs, PoolConfig{MaxBytes: 2048})
	ctx := context.Background()
	get := func(loc Locator) unsafe.Pointer {
		t.Helper()
		b, err := p.Get(ctx, loc)
		if err != nil {
			t.Fatal(err)
		}
		if b.Locator() != loc || Sum(b.Bytes()) != loc.Hash {
			t.Fatal("wrong block")
		}
		ptr := unsafe.Pointer(unsafe.SliceData(b.Bytes()))
		b.Release()
		return ptr
	}
	get(A)
	bMem := get(B)
	get(A) // A is now the most recently used
	if cMem := get(C); cMem != bMem {
		t.Error("C did not reuse the memory of the evicted LRU block B")
	}
	get(A)
	if cs.GetsOf(A.Hash) != 1 || cs.GetsOf(C.Hash) != 1 || cs.GetsOf(B.Hash) != 1 {
		t.Fatal("unexpected store reads")
	}
	get(B) // evicted: fetched again
	if cs.GetsOf(B.Hash) != 2 {
		t.Fatal("B was not evicted")
	}
	if s := p.Stats(); s.Evictions != 2 || s.BytesHeld != 2048 || s.Buffers != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestPoolMixedSizes checks the accounting when evicted slices cannot be
// reused.
func TestPoolMixedSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	small := [][]byte{randBlock(r, 1000), randBlock(r, 1000), randBlock(r, 1000), randBlock(r, 1000)}
	big := randBlock(r, 3000)
	p := NewPool(newMemStore(append(small, big)...), PoolConfig{MaxBytes: 4000})
	ctx := context.Background()
	for _, b := range small {
		buf, err := p.Get(ctx, LocatorOf(b))
		if err != nil {
			t.Fatal(err)
		}
		buf.Release()
	}
	buf, err := p.Get(ctx, LocatorOf(big))
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.BytesHeld != 4000 || s.Buffers != 2 || s.Evictions != 3 {
		t.Fatalf("stats %+v", s)
	}
	buf.Release()
	// A small block may reuse the big slice only when nothing else fits.
	held, _ := p.Get(ctx, LocatorOf(small[3]))
	for _, b := range small[:3] {
		buf, err := p.Get(ctx, LocatorOf(b))
		if err != nil {
			t.Fatal(err)
		}
		buf.Release()
	}
	held.Release()
	if s := p.Stats(); s.BytesHeld > 4000 {
		t.Fatalf("stats %+v", s)
	}
	assertIdle(t, p)
}

func TestPoolEmptyBlock(t *testing.T) {
	loc := LocatorOf(nil)
	p := NewPool(newMemStore(nil), PoolConfig{})
	b, err := p.Get(context.Background(), loc)
	if err != nil || len(b.Bytes()) != 0 {
		t.Fatal(err)
	}
	b.Release()
}

func TestPoolPrefetch(t *testing.T) {
	blocks := testBlocks(3, 100)
	A, B, C := LocatorOf(blocks[0]), LocatorOf(blocks[1]), LocatorOf(blocks[2])
	gate := newGateStore(newMemStore(blocks...))
	cs := NewCountingStore(gate)
	p := NewPool(cs, PoolConfig{MaxBytes: 200, MaxPrefetch: 1})
	if !p.Prefetch(A) {
		t.Fatal("Prefetch(A) = false")
	}
	<-gate.entered
	if !p.Prefetch(A) {
		t.Fatal("Prefetch of an in-flight block = false")
	}
	if p.Prefetch(B) {
		t.Fatal("Prefetch past MaxPrefetch = true")
	}
	r := getAsync(context.Background(), p, A)
	waitFor(t, "Get to join the prefetch", func() bool { return p.Stats().Shared == 1 })
	gate.open()
	res := <-r
	if res.err != nil || !bytes.Equal(res.b.Bytes(), blocks[0]) {
		t.Fatal(res.err)
	}
	waitFor(t, "prefetch to finish", func() bool { return p.Stats().BuffersInUse == 1 })
	if !p.Prefetch(B) {
		t.Fatal("Prefetch(B) = false")
	}
	<-gate.entered
	p.Close() // waits for the prefetch of B, then lets go of it (idle)
	if s := p.Stats(); s.Buffers != 1 || s.BytesHeld != 100 {
		t.Fatalf("after Close, A (held) alone should remain: %+v", s)
	}
	// After Close, a Get that would need a fetch fails; held A is found.
	if _, err := p.Get(context.Background(), B); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get of a dropped block after Close: %v, want context.Canceled", err)
	}
	b, err := p.Get(context.Background(), A)
	if err != nil {
		t.Fatal(err)
	}
	// Prefetch never blocks: with every buffer held it fails; with one
	// idle it may evict it.
	p2 := NewPool(cs, PoolConfig{MaxBytes: 200})
	h1, _ := p2.Get(context.Background(), A)
	h2, _ := p2.Get(context.Background(), B)
	if p2.Prefetch(C) {
		t.Fatal("Prefetch with no free buffer = true")
	}
	h1.Release()
	h2.Release()
	if !p2.Prefetch(C) {
		t.Fatal("Prefetch with an evictable buffer = false")
	}
	p2.Close()
	if p2.Prefetch(LocatorOf([]byte("new"))) {
		t.Fatal("Prefetch after Close = true")
	}
	b.Release()
	res.b.Release()
	if s := p.Stats(); s.Prefetches != 2 || cs.GetsOf(A.Hash) != 2 || cs.GetsOf(B.Hash) != 2 {
		t.Fatalf("stats %+v, reads of A %d, B %d", s, cs.GetsOf(A.Hash), cs.GetsOf(B.Hash))
	}
	assertIdle(t, p)
	assertIdle(t, p2)
}

// TestPoolStartPrefetch: done is called once, after the fetch a call
// started has finished (the block is then a hit), also when that fetch
// failed; a call that started nothing never calls it. InFlight counts the
// fetch until done has returned.
func TestPoolStartPrefetch(t *testing.T) {
	blocks := testBlocks(2, 100)
	A, B := LocatorOf(blocks[0]), LocatorOf(blocks[1])
	missing := LocatorOf([]byte("not in the store"))
	gate := newGateStore(newMemStore(blocks...))
	cs := NewCountingStore(gate)
	p := NewPool(cs, PoolConfig{})
	defer p.Close()

	calls := make(chan Locator, 4)
	doneFor := func(l Locator) func() {
		return func() {
			if p.Stats().InFlight != 1 {
				t.Errorf("done for %v: InFlight %d, want 1 (its own fetch)", l, p.Stats().InFlight)
			}
			calls <- l
		}
	}
	if ok, started := p.StartPrefetch(A, doneFor(A)); !ok || !started {
		t.Fatalf("StartPrefetch(A) = %v, %v", ok, started)
	}
	<-gate.entered
	if ok, started := p.StartPrefetch(A, doneFor(A)); !ok || started {
		t.Fatalf("StartPrefetch of an in-flight block = %v, %v; want true, false", ok, started)
	}
	if n := p.Stats().InFlight; n != 1 {
		t.Fatalf("InFlight %d during one fetch", n)
	}
	gate.open()
	if l := <-calls; l != A {
		t.Fatalf("done called for %v", l)
	}
	waitFor(t, "the fetch to end", func() bool { return p.Stats().InFlight == 0 })
	b, err := p.Get(context.Background(), A)
	if err != nil {
		t.Fatal(err)
	}
	b.Release()
	if s := p.Stats(); s.Hits != 1 || cs.GetsOf(A.Hash) != 1 {
		t.Fatalf("A after its prefetch: %+v, %d reads", s, cs.GetsOf(A.Hash))
	}
	if ok, started := p.StartPrefetch(A, doneFor(A)); !ok || started {
		t.Fatalf("StartPrefetch of a cached block = %v, %v; want true, false", ok, started)
	}
	// A failed fetch calls done too, and leaves nothing behind.
	if ok, started := p.StartPrefetch(missing, doneFor(missing)); !ok || !started {
		t.Fatalf("StartPrefetch(missing) = %v, %v", ok, started)
	}
	<-gate.entered
	if l := <-calls; l != missing {
		t.Fatalf("done called for %v", l)
	}
	waitFor(t, "the failed fetch to end", func() bool { return p.Stats().InFlight == 0 })
	if s := p.Stats(); s.Errors != 1 {
		t.Fatalf("failed prefetch not counted: %+v", s)
	}
	// A nil done is allowed (that is Prefetch).
	if !p.Prefetch(B) {
		t.Fatal("Prefetch(B) = false")
	}
	<-gate.entered
	waitFor(t, "the prefetch of B to end", func() bool { return p.Stats().InFlight == 0 })
	if len(calls) != 0 {
		t.Fatalf("done called %d more times", len(calls))
	}
	assertIdle(t, p)
}

func TestPoolDoubleRelease(t *testing.T) {
	data := []byte("x")
	p := NewPool(newMemStore(data), PoolConfig{})
	b, err := p.Get(context.Background(), LocatorOf(data))
	if err != nil {
		t.Fatal(err)
	}
	b.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("second Release did not panic")
		}
	}()
	b.Release()
}

func TestPoolCancelledContext(t *testing.T) {
	data := []byte("x")
	p := NewPool(newMemStore(data), PoolConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Get(ctx, LocatorOf(data)); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// Close cancels a fetch hung in the store rather than wait for it: a
// shutdown cannot be held up by a store that never answers.
func TestPoolCloseCancelsFetches(t *testing.T) {
	data := testBlocks(1, 100)[0]
	gate := newGateStore(newMemStore(data)) // never opened
	p := NewPool(gate, PoolConfig{})
	r := getAsync(context.Background(), p, LocatorOf(data))
	<-gate.entered
	p.Close() // returns: the fetch was cancelled
	if res := <-r; !errors.Is(res.err, context.Canceled) {
		t.Fatalf("Get of a fetch cancelled by Close: %v, want context.Canceled", res.err)
	}
	if gate.ctxErrs.Load() != 1 {
		t.Fatalf("the store saw %d cancellations, want 1", gate.ctxErrs.Load())
	}
	assertIdle(t, p)
}

// TestPoolPatientPrefetch: a prefetched block large enough to pair waits
// for a partner before it is hashed (see sumPatient); a Get that needs it
// hurries it, and Close releases one that nobody wants.
func TestPoolPatientPrefetch(t *testing.T) {
	if !haveSum2 {
		t.Skip("no SHA extensions on this CPU: Sum does not pair")
	}
	hasher.mu.Lock()
	old := hasher.patience
	hasher.patience = time.Hour // only hurry or Close may end the wait
	hasher.mu.Unlock()
	defer func() {
		hasher.mu.Lock()
		hasher.patience = old
		hasher.mu.Unlock()
	}()
	blocks := testBlocks(2, 1<<20)
	A, B := LocatorOf(blocks[0]), LocatorOf(blocks[1])
	p := NewPool(newMemStore(blocks...), PoolConfig{MaxBytes: 4 << 20})

	if !p.Prefetch(A) {
		t.Fatal("Prefetch(A) = false")
	}
	waitFor(t, "the prefetch of A to wait for a partner", hasher.hasPending)
	b, err := p.Get(context.Background(), A)
	if err != nil || !bytes.Equal(b.Bytes(), blocks[0]) {
		t.Fatalf("Get of a waiting prefetch: %v", err)
	}
	b.Release()

	if !p.Prefetch(B) {
		t.Fatal("Prefetch(B) = false")
	}
	waitFor(t, "the prefetch of B to wait for a partner", hasher.hasPending)
	p.Close() // must not wait an hour
	if hasher.hasPending() {
		t.Fatal("a prefetch still waits after Close")
	}
	if s := p.Stats(); s.Fetches != 2 || s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}
	assertIdle(t, p)
}

// failFirstStore fails its first Get and serves every later one.
type failFirstStore struct {
	Store
	calls atomic.Int64
}

func (f *failFirstStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	if f.calls.Add(1) == 1 {
		return 0, errBoom
	}
	return f.Store.Get(ctx, loc, dst)
}

// TestPoolLateJoinerRetries: a Get that joins another Get's fetch long
// under way (here: any, lateJoin 0) and sees it fail asks the store once
// more for itself, as after an outage that ended while the fetch was
// failing; the Get that started the fetch gets its failure.
func TestPoolLateJoinerRetries(t *testing.T) {
	defer func(old time.Duration) { lateJoin = old }(lateJoin)
	lateJoin = 0
	data := testBlocks(1, 1000)[0]
	loc := LocatorOf(data)
	gate := newGateStore(&failFirstStore{Store: newMemStore(data)})
	cs := NewCountingStore(gate)
	p := NewPool(cs, PoolConfig{})
	first := getAsync(context.Background(), p, loc)
	<-gate.entered
	late := getAsync(context.Background(), p, loc)
	waitFor(t, "the second Get to join the fetch", func() bool { return p.Stats().Shared == 1 })
	gate.open()
	if r := <-first; !errors.Is(r.err, errBoom) {
		t.Fatalf("the Get that started the failing fetch: %v, want errBoom", r.err)
	}
	r := <-late
	if r.err != nil || !bytes.Equal(r.b.Bytes(), data) {
		t.Fatalf("the late joiner: %v, want the block after its own retry", r.err)
	}
	r.b.Release()
	if got := cs.GetsOf(loc.Hash); got != 2 {
		t.Errorf("store reads %d, want 2 (the failed fetch and the joiner's retry)", got)
	}
}
