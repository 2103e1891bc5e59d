package mount

import (
	"sync"

	"blockfs/fs/tree"
)

// readahead is the readahead of one open file. It remembers where the last
// read ended to tell a sequential reader (worth reading ahead for) from a
// random one, and keeps that reader's prefetches going: each one that
// finishes starts the next (the pool calls back prefetchDone).
type readahead struct {
	mount *Mount
	node  *tree.Node
	done  func() // prefetchDone as a func value, made once

	mu         sync.Mutex
	runStart   int64 // where the current sequential run began
	next       int64 // where the run ends, i.e. where a sequential reader reads next
	reading    int   // the block holding the end of the latest read
	prefetched int   // blocks below this index have been prefetched
	inFlight   int   // prefetches this reader started that have not finished
	window     int   // how many may run at once: 0 unless the run is sequential
	released   bool
}

func (h *readahead) init(m *Mount, n *tree.Node) {
	h.mount, h.node = m, n
	h.done = h.prefetchDone
}

// observe is told of every read [off, end) of the handle and prefetches
// the blocks after it into the pool once the handle reads sequentially.
//
// A read continues a run if it starts near where the run ends (the kernel's
// parallel readahead requests arrive slightly out of order). Prefetching
// starts only once a run spans seqRun bytes: more than the kernel's own
// readahead around one random read, so random access prefetches nothing.
// A run from offset 0 is the exception: it gets a quarter of the window at
// once.
//
// The window is a number of fetches in flight, not a distance from the
// reader: each finished prefetch starts the next (see fill). Stores answer
// some requests much later than others (S3's long tail), and a reader
// waiting for one slow block must not leave the store idle meanwhile.
func (h *readahead) observe(off, end int64) {
	m := h.mount
	if m.opts.Readahead < 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	started := h.next != 0 || off == 0
	if started && off >= h.next-seqBack && off <= h.next+seqAhead {
		h.runStart, h.next = min(h.runStart, off), max(h.next, end)
	} else {
		// A new run (a seek): what was prefetched for the old one says
		// nothing about this one.
		h.runStart, h.next, h.prefetched = off, end, 0
	}
	switch {
	case h.next-h.runStart >= seqRun:
		h.window = m.opts.Readahead
	case h.runStart == 0:
		// A run from the start of the file is most likely a whole-file
		// read (the kernel's own readahead bets the same), and waiting
		// for it to prove itself would cost a round trip to the store
		// with nothing in flight.
		h.window = max(1, m.opts.Readahead/4)
	default:
		h.window = 0
	}
	h.reading, _, _ = h.node.Block(end - 1)
	h.prefetched = max(h.prefetched, h.reading+1)
	h.fill()
}

// fill starts prefetches, in order after the reader's block, while fewer
// than window run, the next block is at most 2*window blocks ahead of the
// reader, and the bytes ahead of the reader stay within a quarter of the
// pool (so large blocks cannot overrun it). A block the pool cannot take
// now is tried again at the next read or finished prefetch. Called with
// h.mu held.
func (h *readahead) fill() {
	m, n := h.mount, h.node
	if h.released {
		return
	}
	readerEnd := n.Start(h.reading) + n.Len(h.reading)
	for h.inFlight < h.window && h.prefetched < len(n.Blocks) && h.prefetched-h.reading <= 2*h.window {
		loc := n.Blocks[h.prefetched]
		if tree.IsHole(loc) { // nothing to fetch
			h.prefetched++
			continue
		}
		if n.Start(h.prefetched)+n.Len(h.prefetched)-readerEnd > m.opts.PoolSize/4 {
			return
		}
		ok, started := m.pool.StartPrefetch(loc, h.done)
		if !ok {
			return
		}
		if started {
			h.inFlight++
		}
		m.counters.prefetches.Add(1)
		h.prefetched++
	}
}

// prefetchDone is called by the pool when a prefetch this reader started
// has finished: it makes room for the next.
func (h *readahead) prefetchDone() {
	h.mu.Lock()
	h.inFlight--
	h.fill()
	h.mu.Unlock()
}

// stop ends the readahead: no prefetch starts after it.
func (h *readahead) stop() {
	h.mu.Lock()
	h.released = true
	h.mu.Unlock()
}

// Bounds of a sequential run: how far out of order a read may land and still
// continue the run, and how long a run must be before we prefetch.
const (
	seqAhead = maxRead
	seqBack  = 2 * maxRead
	seqRun   = 2 * maxRead
)
