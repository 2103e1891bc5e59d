package blockstore

import "time"

// Buffer is a block's bytes held in a Pool on behalf of one or more callers.
//
// Overlapping Gets of the same block receive the same *Buffer; a reference
// count says how many callers still hold it. When the count drops to zero
// the buffer keeps its block and goes onto the pool's LRU list, so that a
// later Get of the same block is served from memory, until the pool needs
// the memory for another block.
type Buffer struct {
	pool *Pool
	loc  Locator

	// mem is the whole allocation (its capacity is what the pool accounts
	// for and what a later block may reuse); data is mem[:loc.Size:loc.Size],
	// so a caller's append can never scribble on pooled memory.
	// Written by the fetch before done is closed; moved away only under
	// pool.mu while refs == 0.
	mem  []byte
	data []byte
	held int64 // bytes accounted in pool.bytesHeld for this buffer
	// unmap, if set, undoes the mapping that data is (see Mapper); mem is
	// then nil, so the memory is never handed to another block.
	unmap func() error
	// check, for a mapped buffer, says whether the file under the mapping
	// is still the one verified (see Mapping.Unchanged); the Pool calls it
	// before every hand-out.
	check func() error

	// done is closed when the fetch has finished; err is its outcome
	// (set before done is closed, so readable after <-done).
	done chan struct{}
	err  error

	// Guarded by pool.mu.
	refs int // callers holding it, plus one while a fetch runs
	// hurry, for a prefetch, is closed (and set to nil) by the first Get
	// that waits for it: its hashing may wait for a partner until then.
	hurry      chan struct{}
	ready      bool // fetched and verified
	prefetched bool // fetched by a prefetch and not yet asked for by a Get
	// byPrefetch says a prefetch started this buffer's fetch (set once,
	// before the buffer is in the table).
	byPrefetch bool
	// started is when the fetch began (set once, before the buffer is in
	// the table): a Get that joins it much later retries a failure.
	started    time.Time
	stale      bool // mapped file changed: out of the table, dropped by its last release
	prev, next *Buffer
}

// Bytes returns exactly loc.Size verified bytes of the block. They are
// valid, and must not be modified, until Release.
func (b *Buffer) Bytes() []byte { return b.data }

// Locator returns the block this buffer holds.
func (b *Buffer) Locator() Locator { return b.loc }

// Release gives the caller's reference back. Call it exactly once per
// successful Get, and do not touch Bytes afterwards: the memory may be
// handed to another block. (A buffer is shared, so an extra Release steals
// another caller's reference; the pool panics only once the count goes
// negative.)
func (b *Buffer) Release() { b.pool.release(b) }
