package blockstore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Defaults for zero PoolConfig fields.
const (
	DefaultMaxBytes    = 256 << 20
	DefaultMaxWaiters  = 1024
	DefaultMaxPrefetch = 8
)

// PoolConfig bounds a Pool. Zero fields take the defaults above.
type PoolConfig struct {
	// MaxBytes bounds the bytes held in buffers, cached or in use
	// (default 256 MiB when 0).
	MaxBytes int64
	// MaxWaiters is how many callers may wait for a free buffer; beyond
	// that Get returns ErrBusy at once (default 1024 when 0; negative
	// means none may wait).
	MaxWaiters int
	// MaxPrefetch bounds concurrent background prefetches (default 8 when
	// 0; negative disables Prefetch).
	MaxPrefetch int
	// FetchTimeout bounds each store read (0 means no timeout). Because a
	// fetch outlives the caller that started it, this is the only thing
	// that stops a hung backend read.
	FetchTimeout time.Duration
}

// Pool reads blocks from a Store into a bounded set of memory buffers and
// shares them, in the manner of groupcache (single flight plus LRU):
//
//   - Overlapping Gets of one block share one buffer: the first starts a
//     fetch and everyone, the first included, waits for it. If it fails,
//     all of them get its error and nothing is cached, so the next Get
//     tries again.
//   - A released buffer keeps its block on an LRU list, so a later Get is
//     a hit that never reaches the store, until the memory is needed for
//     another block.
//   - Memory is bounded by MaxBytes. A miss takes fresh memory while there
//     is room, and otherwise evicts least-recently-used idle buffers,
//     reusing an evicted slice when its capacity fits. When every byte is
//     in use, callers wait (up to MaxWaiters of them; the rest get ErrBusy
//     so a server can shed load with a 503 instead of queueing forever).
//   - Every byte is verified (size and SHA-256) before any caller sees it.
//
// The fetch does not run on a caller's context: a caller that gives up
// returns ctx.Err() at once while the fetch carries on for the others
// (bounded by FetchTimeout, and ended by Close). The store read never runs
// under the pool mutex, whose critical sections are a map lookup and a few
// pointer moves.
type Pool struct {
	store        Store
	maxBytes     int64
	maxWaiters   int
	maxPrefetch  int
	fetchTimeout time.Duration

	c poolCounters

	mu          sync.Mutex
	part        partition           // counters that must add up in a snapshot
	table       map[Locator]*Buffer // every buffer holding or fetching a block
	lru         lruList             // idle (refs == 0) ready buffers
	bytesHeld   int64               // sum of held over table
	lruBytes    int64               // sum of held over lru
	nwait       int                 // Gets waiting for memory
	wake        chan struct{}       // closed (and reset) to wake them; nil when nobody waits
	prefetching int                 // prefetches in flight
	closed      bool
	wg          sync.WaitGroup // fetches in flight, for Close
	unmaps      []func() error // mappings dropped under mu, undone by unlock
	hungBytes   int64          // part of bytesHeld owned by abandoned store reads (see abandon)
	reaped      chan struct{}  // an abandoned read returned (for Close)

	// stop is the context of every fetch, cancelled by Close: a fetch
	// outlives the callers that started it, but not the pool.
	stop   context.Context
	cancel context.CancelFunc
}

// NewPool returns a Pool reading from s.
func NewPool(s Store, cfg PoolConfig) *Pool {
	if s == nil {
		panic("blockstore: NewPool with nil Store")
	}
	p := &Pool{
		store:        s,
		maxBytes:     cfg.MaxBytes,
		maxWaiters:   cfg.MaxWaiters,
		maxPrefetch:  cfg.MaxPrefetch,
		fetchTimeout: cfg.FetchTimeout,
		table:        make(map[Locator]*Buffer),
		reaped:       make(chan struct{}, 1),
	}
	if p.maxBytes <= 0 {
		p.maxBytes = DefaultMaxBytes
	}
	switch {
	case p.maxWaiters == 0:
		p.maxWaiters = DefaultMaxWaiters
	case p.maxWaiters < 0:
		p.maxWaiters = 0
	}
	switch {
	case p.maxPrefetch == 0:
		p.maxPrefetch = DefaultMaxPrefetch
	case p.maxPrefetch < 0:
		p.maxPrefetch = 0
	}
	p.lru.init()
	p.stop, p.cancel = context.WithCancel(context.Background())
	return p
}

// Get returns a buffer holding the verified bytes of block loc. The caller
// must Release it exactly once.
//
// Errors: ErrMalformed or ErrTooLarge for a locator the pool could never
// hold; ErrBusy when every buffer is in use and MaxWaiters callers already
// wait; ctx.Err() if ctx ends first; otherwise the fetch's error (wrapping
// the store's, e.g. ErrNotFound, or ErrCorrupt when verification failed),
// shared by every caller that waited for that fetch.
func (p *Pool) Get(ctx context.Context, loc Locator) (*Buffer, error) {
	return p.get(ctx, loc, true)
}

// TryGet is Get for a caller that already holds a buffer: it never waits
// for memory, and returns ErrWouldWait instead. A caller that waited for
// memory while holding a buffer could wait forever, if every holder did
// the same. TryGet does wait for a fetch already in flight (it has its
// memory); it fails like Get otherwise.
func (p *Pool) TryGet(ctx context.Context, loc Locator) (*Buffer, error) {
	return p.get(ctx, loc, false)
}

// errChanged says a mapped buffer's file changed after it was verified.
var errChanged = errors.New("mapped block file changed since it was verified")

func (p *Pool) get(ctx context.Context, loc Locator, mayWait bool) (*Buffer, error) {
	b, err := p.getOnce(ctx, loc, mayWait, true)
	if errors.Is(err, errChanged) {
		// Map and verify the block afresh, once: a file whose metadata
		// changed (a chmod, a hard link) still serves, and one whose bytes
		// changed fails its hash. A file that changes again at once fails.
		// It is one Get, classified by its first look-up.
		b, err = p.getOnce(ctx, loc, mayWait, false)
		if errors.Is(err, errChanged) {
			err = fmt.Errorf("%w: get %v: block file keeps changing", ErrCorrupt, loc)
		}
	}
	var pf prefetchFailed
	if errors.As(err, &pf) {
		// The store failed a fetch this Get joined, on its starter's
		// schedule: perhaps during an outage that is over by now. The
		// reader asks the store once for itself before it gives up.
		b, err = p.getOnce(ctx, loc, mayWait, false)
		if errors.As(err, &pf) {
			err = pf.err
		}
	}
	return b, err
}

// lateJoin is how long a fetch must have run before a Get joins it for
// that Get to retry the fetch's failure itself.
var lateJoin = 250 * time.Millisecond

// prefetchFailed is the error of a Get that joined a prefetch's fetch, or
// another Get's long under way, that failed for a reason that may pass
// (not a missing or corrupt block).
type prefetchFailed struct{ err error }

func (e prefetchFailed) Error() string { return e.err.Error() }
func (e prefetchFailed) Unwrap() error { return e.err }

// joinedFailure is err from a fetch this Get joined, marked for one retry
// (see get) when the failure may pass and the fetch ran on someone else's
// schedule: a prefetch's, or a Get's that had been at it for lateJoin when
// this one arrived (perhaps through an outage that is over by now). Gets
// that arrive together share one fetch and its failure: a herd on a
// failing store costs a store read per lateJoin, not one per reader.
func joinedFailure(ctx context.Context, b *Buffer, joined time.Time, err error) error {
	if err == nil || ctx.Err() != nil || !b.byPrefetch && joined.Sub(b.started) < lateJoin ||
		errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge) {
		return err
	}
	return prefetchFailed{err}
}

// getOnce looks loc up, and fetches it if absent. count says whether to
// classify this Get (hit, shared or miss), under p.mu so that a snapshot
// always finds gets == hits + shared + misses.
func (p *Pool) getOnce(ctx context.Context, loc Locator, mayWait, count bool) (*Buffer, error) {
	if err := p.check(loc); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	for {
		if b := p.table[loc]; b != nil {
			p.acquireLocked(b)
			ready := b.ready
			if !ready && b.hurry != nil {
				close(b.hurry) // a prefetch's bytes are wanted now
				b.hurry = nil
			}
			if b.prefetched {
				b.prefetched = false
				p.part.prefetchUsed++
			}
			if count {
				p.part.count(ready)
			}
			p.mu.Unlock()
			if ready {
				return p.handOut(b)
			}
			joined := time.Now()
			buf, err := p.wait(ctx, b)
			return buf, joinedFailure(ctx, b, joined, err)
		}
		if b := p.reserveLocked(loc); b != nil {
			b.refs = 2 // this caller and the fetch
			p.c.inUse.Add(1)
			if count {
				p.part.gets++
				p.part.misses++
			}
			p.part.demandFetches++
			// Close waits for the fetches started before it; none is
			// added once it has begun (a WaitGroup must not grow under
			// a Wait).
			tracked := !p.closed
			if tracked {
				p.wg.Add(1)
			}
			p.c.inFlight.Add(1)
			p.unlock()
			go func() {
				p.fetch(p.stop, b, nil, tracked)
				p.c.inFlight.Add(-1)
			}()
			return p.wait(ctx, b)
		}
		// No memory to be had without waiting.
		if !mayWait {
			p.mu.Unlock() // not a Get after all: the caller asks again
			return nil, fmt.Errorf("%w: get %v", ErrWouldWait, loc)
		}
		if p.nwait >= p.maxWaiters {
			n := p.nwait
			p.mu.Unlock()
			p.c.busy.Add(1)
			return nil, fmt.Errorf("%w: get %v: all buffers in use and %d callers waiting", ErrBusy, loc, n)
		}
		if p.wake == nil {
			p.wake = make(chan struct{})
		}
		wake := p.wake
		p.nwait++
		p.c.waiters.Add(1)
		p.mu.Unlock()
		var err error
		select {
		case <-wake:
		case <-ctx.Done():
			err = ctx.Err()
		}
		p.mu.Lock()
		p.nwait--
		p.c.waiters.Add(-1)
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		// Something was freed: look again from the top, since another
		// caller may meanwhile have started fetching this very block.
	}
}

// Prefetch starts fetching loc into the pool without holding it, so that a
// Get soon after is a hit. It never blocks. It returns true if the block is
// already present or in flight, or a fetch was started; false if it could
// not start one (no buffer free without waiting, callers already waiting
// for memory, MaxPrefetch fetches running, the locator unusable, or the
// pool closed).
func (p *Pool) Prefetch(loc Locator) bool {
	ok, _ := p.StartPrefetch(loc, nil)
	return ok
}

// StartPrefetch is Prefetch for a caller that keeps a number of fetches in
// flight, such as a sequential reader's readahead: started says whether
// this call started the fetch, and if it did, done (when not nil) is
// called once that fetch has finished, well or not, from the fetch's
// goroutine with no pool lock held. A readahead that tops itself up from
// done keeps the store busy while its reader waits for one slow block.
func (p *Pool) StartPrefetch(loc Locator, done func()) (ok, started bool) {
	if p.check(loc) != nil {
		return false, false
	}
	p.mu.Lock()
	defer p.unlock()
	if p.closed {
		return false, false
	}
	if b := p.table[loc]; b != nil {
		if b.refs == 0 { // idle in the LRU: someone wants it soon
			p.lru.remove(b)
			p.lru.pushFront(b)
		}
		return true, false
	}
	// Never take memory that a waiting Get needs.
	if p.prefetching >= p.maxPrefetch || p.nwait > 0 {
		return false, false
	}
	b := p.reserveLocked(loc)
	if b == nil {
		return false, false
	}
	b.refs = 1 // the fetch
	hurry := make(chan struct{})
	b.hurry, b.prefetched, b.byPrefetch = hurry, true, true
	p.c.inUse.Add(1)
	p.prefetching++
	p.part.prefetchFetches++
	p.wg.Add(1)
	p.c.inFlight.Add(1)
	go func() {
		p.fetch(p.stop, b, hurry, true)
		if done != nil {
			done()
		}
		p.c.inFlight.Add(-1)
	}()
	return true, true
}

// Close ends the pool's work: it stops new prefetches, cancels the fetches
// in flight (a store that hangs cannot hold up a shutdown) and waits for
// them (and for a Keeper store to have kept what they read), then lets go
// of every idle buffer (unmapping mapped ones). Buffers still held stay
// valid until released. A Get after Close finds only those; any other
// fails with context.Canceled.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.waitHung()
	p.mu.Lock()
	for v := p.lru.back(); v != nil && v != &p.lru.root; v = p.lru.back() {
		p.evictLocked(v)
		p.dropLocked(v)
	}
	p.unlock()
}

// closeGrace is how long Close waits for abandoned store reads to return.
// A store that honours its context returns at once when Close cancels it,
// and Close then leaves nothing behind; one stuck in the kernel does not,
// and must not hold up a shutdown.
const closeGrace = time.Second

// waitHung waits, up to closeGrace, for the abandoned reads to return.
func (p *Pool) waitHung() {
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	for p.c.hung.Load() > 0 {
		select {
		case <-p.reaped:
		case <-grace.C:
			return
		}
	}
}

// unlock releases p.mu, then unmaps the mappings dropped while it was
// held: a munmap (a TLB shootdown) is too slow for the pool's mutex.
func (p *Pool) unlock() {
	u := p.unmaps
	p.unmaps = nil
	p.mu.Unlock()
	for _, unmap := range u {
		unmap()
	}
}

// check rejects locators the pool can never serve.
func (p *Pool) check(loc Locator) error {
	if err := loc.validate(); err != nil {
		return err
	}
	if loc.Size > p.maxBytes {
		return fmt.Errorf("%w: get %v: larger than pool MaxBytes %d", ErrTooLarge, loc, p.maxBytes)
	}
	return nil
}

// wait blocks until b's fetch is done or ctx ends, holding one reference,
// which it gives back on any error.
func (p *Pool) wait(ctx context.Context, b *Buffer) (*Buffer, error) {
	select {
	case <-b.done:
		if b.err != nil {
			p.release(b)
			return nil, b.err
		}
		return p.handOut(b)
	case <-ctx.Done():
		p.release(b)
		return nil, ctx.Err()
	}
}

// handOut gives a caller holding a reference to ready buffer b its bytes,
// after checking, for a mapped buffer, that the file under the mapping has
// not changed since it was verified: a shared mapping shows whatever is
// later written into the file. A changed buffer leaves the table (no one
// else gets it), is dropped by its last release, and the caller's
// reference is given back with errChanged.
func (p *Pool) handOut(b *Buffer) (*Buffer, error) {
	if b.check == nil || b.check() == nil {
		p.c.readBytes.Add(b.loc.Size)
		return b, nil
	}
	p.mu.Lock()
	if p.table[b.loc] == b {
		p.c.changed.Add(1)
		delete(p.table, b.loc)
		p.c.buffers.Add(-1)
		b.ready, b.stale = false, true
	}
	p.releaseLocked(b)
	p.unlock()
	return nil, fmt.Errorf("blockstore: get %v: %w", b.loc, errChanged)
}

// fetch reads b's block from the store into b, verifies it and publishes
// the outcome to every waiter, then lets a Keeper store keep the verified
// bytes. It owns one reference to b while it runs, so b cannot be evicted
// underneath it. A prefetch has a hurry channel (see Buffer.hurry).
// tracked says it counts in p.wg, for Close.
func (p *Pool) fetch(ctx context.Context, b *Buffer, hurry chan struct{}, tracked bool) {
	prefetch := hurry != nil
	if p.fetchTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.fetchTimeout)
		defer cancel()
	}
	start := time.Now()
	n, err := p.readBounded(ctx, b)
	p.c.fetchLatency.Since(start)
	if n > 0 {
		p.c.fetchBytes.Add(int64(n))
	}
	if err == nil {
		// A prefetch's bytes are hashed when they can be paired, or
		// when someone waits for them (see sumPatient).
		err = verify(b.loc, b.data, n, hurry, ctx.Done())
	}
	if err != nil {
		err = fmt.Errorf("blockstore: fetch %v: %w", b.loc, err)
		p.c.errors.Add(1)
		if errors.Is(err, ErrCorrupt) {
			p.c.verifyFailures.Add(1)
		}
		if b.unmap != nil { // nobody saw these bytes
			b.unmap()
			b.unmap, b.check, b.data = nil, nil, nil
		}
	}

	p.mu.Lock()
	if b.unmap != nil && b.held > b.loc.Size {
		// Mapped into memory reused from an evicted buffer: that memory
		// went unused, so account for the block alone.
		p.bytesHeld -= b.held - b.loc.Size
		p.c.bytesHeld.Store(p.bytesHeld)
		b.held = b.loc.Size
	}
	if err != nil {
		// Forget the block at once (the next Get fetches afresh) and free
		// its memory; waiters only look at b.err.
		b.err = err
		delete(p.table, b.loc)
		p.c.buffers.Add(-1)
		p.dropLocked(b)
		p.wakeLocked()
	} else {
		b.ready = true
	}
	close(b.done)
	if k, ok := As[Keeper](p.store); ok && err == nil {
		// Waiters have the bytes; the fetch's reference keeps them
		// valid while a cache writes its copy.
		p.mu.Unlock()
		k.Keep(b.loc, b.data)
		p.mu.Lock()
	}
	if prefetch {
		p.prefetching--
	}
	p.releaseLocked(b)
	p.unlock()
	if tracked {
		p.wg.Done()
	}
}

// maxHung bounds the store reads a pool abandons at their deadline that
// have not returned yet. Each keeps its buffer's memory accounted until it
// returns, so MaxBytes holds regardless; this bounds the goroutines. Past
// it, a hung store fails new fetches at once with ErrBusy.
const maxHung = 64

// readResult is what one store read produced: a mapping, or n bytes read
// into mem.
type readResult struct {
	n   int
	mem []byte
	m   *Mapping
	err error
}

// readBounded fills b with its block (see read), but returns when ctx ends
// even if the store does not: a read blocked in the kernel (a hung NFS
// server, a FIFO, a dead disk) ignores ctx, and must hold neither the
// callers waiting for it nor Close. The read runs in its own goroutine and
// touches no pool state, so abandoning it is safe (see abandon).
func (p *Pool) readBounded(ctx context.Context, b *Buffer) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err // the pool is closed
	}
	if n := p.c.hung.Load(); n >= maxHung {
		return 0, fmt.Errorf("%w: %d store reads still blocked past their deadline", ErrBusy, n)
	}
	loc, mem := b.loc, b.mem
	ch := make(chan readResult, 1)
	go func() { ch <- p.read(ctx, loc, mem) }()
	var r readResult
	select {
	case r = <-ch:
	case <-ctx.Done():
		p.abandon(b, ch)
		return 0, fmt.Errorf("store read abandoned, still blocked: %w", ctx.Err())
	}
	if r.m != nil {
		// Should the pool itself be dropped unclosed, its mappings
		// go with it rather than stay locked for the process's life.
		runtime.AddCleanup(b, func(unmap func() error) { unmap() }, r.m.Unmap)
		b.mem, b.data, b.unmap, b.check = nil, r.m.Bytes(), r.m.Unmap, r.m.Unchanged
		p.c.mapped.Add(1)
		return len(b.data), nil
	}
	if r.mem != nil {
		b.mem, b.data = r.mem, r.mem[:loc.Size:loc.Size]
	}
	return r.n, r.err
}

// read reads block loc: mapped in place if the store can (see Mapper), else
// copied with Get into mem (allocated here when nil, not under the mutex:
// zeroing 64 MiB takes a while).
func (p *Pool) read(ctx context.Context, loc Locator, mem []byte) readResult {
	if m, ok := As[Mapper](p.store); ok {
		mp, err := m.Map(ctx, loc)
		if err == nil {
			return readResult{n: len(mp.Bytes()), m: mp}
		}
		if !errors.Is(err, errNoMap) {
			return readResult{mem: mem, err: err}
		}
	}
	if mem == nil {
		mem = make([]byte, loc.Size)
	}
	n, err := p.store.Get(ctx, loc, mem[:loc.Size:loc.Size])
	return readResult{n: n, mem: mem, err: err}
}

// abandon gives up on b's read, still running in the store: b loses its
// memory to that read, which stays accounted for in bytesHeld (as hungBytes)
// until the read returns and a reaper lets it go, undoing a late mapping.
func (p *Pool) abandon(b *Buffer, ch <-chan readResult) {
	p.mu.Lock()
	held := b.held
	b.held, b.mem, b.data = 0, nil, nil
	p.hungBytes += held
	p.mu.Unlock()
	p.c.hung.Add(1)
	go func() {
		r := <-ch
		if r.m != nil {
			r.m.Unmap()
		}
		p.mu.Lock()
		p.hungBytes -= held
		p.bytesHeld -= held
		p.c.bytesHeld.Store(p.bytesHeld)
		p.wakeLocked()
		p.mu.Unlock()
		p.c.hung.Add(-1)
		select {
		case p.reaped <- struct{}{}:
		default: // Close is not waiting, or has a wake-up pending
		}
	}()
}

// verify checks that the n bytes read are exactly the block loc names.
// With hurry set, hashing may wait for a partner until hurry or stop is
// closed (see sumPatient).
func verify(loc Locator, data []byte, n int, hurry, stop <-chan struct{}) error {
	if int64(n) != loc.Size {
		return fmt.Errorf("%w: store returned %d bytes, locator says %d", ErrCorrupt, n, loc.Size)
	}
	if got := sumPatient(data, hurry, stop); got != loc.Hash {
		return fmt.Errorf("%w: data hashes to %v", ErrCorrupt, got)
	}
	return nil
}

// reserveLocked finds memory for loc without waiting and registers a new,
// not yet ready buffer for it (refs 0; the caller sets them). It returns nil
// if the memory cannot be had without waiting for a buffer to be released.
func (p *Pool) reserveLocked(loc Locator) *Buffer {
	need := loc.Size
	b := &Buffer{pool: p, loc: loc, done: make(chan struct{}), started: time.Now()}
	switch {
	case p.bytesHeld+need <= p.maxBytes:
		// Room for fresh memory; the fetch allocates it.
		b.held = need
		p.bytesHeld += need
	case p.bytesHeld-p.lruBytes+need <= p.maxBytes:
		// Evicting idle buffers, oldest first, makes room. Reuse an
		// evicted slice if it fits without wasting more than half of
		// it; otherwise drop it, so bytesHeld stays honest.
		for {
			v := p.lru.back()
			p.evictLocked(v)
			if c := int64(cap(v.mem)); v.unmap == nil && c >= need && c <= 2*need {
				p.moveMemLocked(v, b)
				break
			}
			p.dropLocked(v)
			if p.bytesHeld+need <= p.maxBytes {
				b.held = need
				p.bytesHeld += need
				break
			}
		}
	default:
		// Even evicting every idle buffer would not free enough, but
		// one of them may be big enough to reuse: take the oldest.
		v := p.lru.back()
		for v != nil && v != &p.lru.root && (v.unmap != nil || int64(cap(v.mem)) < need) {
			v = v.prev
		}
		if v == nil || v == &p.lru.root {
			return nil
		}
		p.evictLocked(v)
		p.moveMemLocked(v, b)
	}
	p.table[loc] = b
	p.c.buffers.Add(1)
	p.c.bytesHeld.Store(p.bytesHeld)
	return b
}

// evictLocked removes idle buffer v from the LRU and the table. Its memory
// is still accounted for until moved or dropped.
func (p *Pool) evictLocked(v *Buffer) {
	p.lru.remove(v)
	p.lruBytes -= v.held
	delete(p.table, v.loc)
	p.c.buffers.Add(-1)
	p.c.evictions.Add(1)
	if v.prefetched { // fetched ahead, never asked for
		v.prefetched = false
		p.part.prefetchWasted++
	}
}

// moveMemLocked hands v's memory (and its accounting) to b.
func (p *Pool) moveMemLocked(v, b *Buffer) {
	b.mem, b.held = v.mem, v.held
	v.mem, v.data, v.held = nil, nil, 0
}

// dropLocked lets the garbage collector have b's memory, or queues its
// mapping for unlock to undo.
func (p *Pool) dropLocked(b *Buffer) {
	p.bytesHeld -= b.held
	p.c.bytesHeld.Store(p.bytesHeld)
	if b.unmap != nil {
		p.unmaps = append(p.unmaps, b.unmap)
	}
	b.mem, b.data, b.held, b.unmap, b.check = nil, nil, 0, nil, nil
}

// acquireLocked takes a reference to b, taking it off the LRU if idle.
func (p *Pool) acquireLocked(b *Buffer) {
	if b.refs == 0 {
		p.lru.remove(b)
		p.lruBytes -= b.held
		p.c.inUse.Add(1)
	}
	b.refs++
}

func (p *Pool) release(b *Buffer) {
	p.mu.Lock()
	if b.refs <= 0 {
		p.mu.Unlock()
		panic("blockstore: Buffer released more often than acquired")
	}
	p.releaseLocked(b)
	p.unlock()
}

// releaseLocked drops a reference. The last one puts a verified buffer on
// the LRU (keeping its block for reuse) and wakes callers waiting for
// memory; a failed buffer was already forgotten and simply goes away.
func (p *Pool) releaseLocked(b *Buffer) {
	b.refs--
	if b.refs > 0 {
		return
	}
	p.c.inUse.Add(-1)
	switch {
	case b.ready:
		p.lru.pushFront(b)
		p.lruBytes += b.held
		p.wakeLocked()
	case b.stale:
		p.dropLocked(b) // the caller's unlock unmaps it
		p.wakeLocked()
	}
}

// wakeLocked wakes every caller waiting for memory; each re-checks. A
// broadcast is simple and cannot lose a wake-up; there are no waiters (and
// no channel, so no allocation) in the common case.
func (p *Pool) wakeLocked() {
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
}

// Holds reports whether the pool holds loc fetched and verified right now
// (a read of it would not go to the store); for introspection such as a
// mount's user.blockfs.cached attribute. It waits for nothing.
func (p *Pool) Holds(loc Locator) bool {
	p.mu.Lock()
	defer p.unlock()
	b := p.table[loc]
	return b != nil && b.ready && !b.stale
}
