package diskcache

import "blockfs/blockstore"

// queue says which list an entry is on.
type queue uint8

const (
	qNone  queue = iota
	qSmall       // S3-FIFO probationary FIFO (new blocks)
	qMain        // S3-FIFO main FIFO (blocks seen again); the only queue of plain LRU
	qGhost       // S3-FIFO ghost FIFO: hashes recently evicted from small, no file
)

// entry is one block known to the cache: resident (a file on disk) or, for
// S3-FIFO, a ghost. Links are intrusive so queue moves never allocate.
type entry struct {
	hash       blockstore.Hash
	size       int64 // bytes of the cache file (data + trailer); for a ghost, what it had
	freq       uint8 // S3-FIFO access count since admission, capped at maxFreq
	q          queue
	prev, next *entry
}

// list is an intrusive doubly-linked FIFO: push at the front, evict at the back.
type list struct {
	root  entry // sentinel
	n     int
	bytes int64
}

func (l *list) init() { l.root.next, l.root.prev = &l.root, &l.root }

func (l *list) pushFront(e *entry) {
	e.prev, e.next = &l.root, l.root.next
	e.prev.next, e.next.prev = e, e
	l.n++
	l.bytes += e.size
}

func (l *list) remove(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	l.n--
	l.bytes -= e.size
}

func (l *list) back() *entry {
	if l.n == 0 {
		return nil
	}
	return l.root.prev
}

// eachOldest calls fn from the back (oldest) to the front.
func (l *list) eachOldest(fn func(*entry)) {
	for e := l.root.prev; e != &l.root; e = e.prev {
		fn(e)
	}
}

// policy decides what to evict. All methods run under Cache.mu.
type policy interface {
	// admit places a new resident entry (e.size set).
	admit(e *entry)
	// touch records a hit on a resident entry.
	touch(e *entry)
	// evict unlinks and returns the resident entry to drop next, or nil if
	// none is left.
	evict() *entry
	// remove unlinks a resident entry dropped for another reason
	// (damage, Delete, replacement).
	remove(e *entry)
	// restore re-links an entry from saved state (e.q and e.freq set),
	// called oldest first per queue, without evicting. Ghosts are restored
	// the same way (they are not resident).
	restore(e *entry)
	// each calls fn for every entry, ghosts included, in an order that
	// restore reproduces.
	each(fn func(*entry))
}

const (
	maxFreq = 3
	// smallShare is the small queue's share of the cache, in percent
	// (10%, as in the S3-FIFO paper).
	smallShare = 10
)

// s3fifo is S3-FIFO (Yang et al., "FIFO queues are all you need for cache
// eviction", SOSP 2023): a small FIFO S for new blocks (10% of the bytes), a
// main FIFO M for the rest and a ghost FIFO G of recently evicted hashes.
//
//   - A miss enters S, or M directly if its hash is in G (it was evicted
//     from S too early: its reuse distance is longer than S).
//   - A hit only bumps a 2-bit counter; nothing moves.
//   - Evicting from S: a block hit while in S moves to M; one that was not
//     (a one-hit wonder, e.g. every block of a scan) leaves, its hash to G.
//   - Evicting from M: a block with a non-zero count is reinserted with the
//     count decremented (CLOCK-like second chances); one at zero leaves.
//
// So a sequential scan, however long, only cycles through S and G; the
// blocks in M are never touched by it.
type s3fifo struct {
	small, main, ghost list
	ghosts             map[blockstore.Hash]*entry
	smallTarget        int64 // S is evicted from once it holds this many bytes
	ghostMax           int64 // G remembers hashes of at most this many bytes
	c                  *counters
}

func newS3FIFO(maxBytes int64, c *counters) *s3fifo {
	p := &s3fifo{
		ghosts:      make(map[blockstore.Hash]*entry),
		smallTarget: max(maxBytes*smallShare/100, 1),
		c:           c,
	}
	p.ghostMax = maxBytes - p.smallTarget
	p.small.init()
	p.main.init()
	p.ghost.init()
	return p
}

func (p *s3fifo) admit(e *entry) {
	e.freq = 0
	if g := p.ghosts[e.hash]; g != nil {
		p.forgetGhost(g)
		p.c.ghostHits.Add(1)
		e.q = qMain
		p.main.pushFront(e)
		return
	}
	e.q = qSmall
	p.small.pushFront(e)
}

func (p *s3fifo) touch(e *entry) {
	if e.freq < maxFreq {
		e.freq++
	}
}

func (p *s3fifo) evict() *entry {
	// Every pass either returns, or moves an entry from S to M (S
	// shrinks; its count resets), or decrements a count in M: this ends.
	for {
		if p.small.n > 0 && (p.small.bytes >= p.smallTarget || p.main.n == 0) {
			t := p.small.back()
			p.small.remove(t)
			if t.freq > 0 {
				t.freq = 0
				t.q = qMain
				p.main.pushFront(t)
				p.c.promotions.Add(1)
				continue
			}
			t.q = qNone
			p.remember(t)
			return t
		}
		t := p.main.back()
		if t == nil {
			return nil
		}
		p.main.remove(t)
		if t.freq > 0 {
			t.freq--
			p.main.pushFront(t)
			continue
		}
		t.q = qNone
		return t
	}
}

func (p *s3fifo) remove(e *entry) {
	switch e.q {
	case qSmall:
		p.small.remove(e)
	case qMain:
		p.main.remove(e)
	}
	e.q = qNone
}

// remember puts the hash of a block evicted from S on G, forgetting the
// oldest ghosts beyond ghostMax bytes.
func (p *s3fifo) remember(t *entry) {
	if old := p.ghosts[t.hash]; old != nil {
		p.forgetGhost(old)
	}
	g := &entry{hash: t.hash, size: t.size, q: qGhost}
	p.ghosts[g.hash] = g
	p.ghost.pushFront(g)
	for p.ghost.bytes > p.ghostMax {
		p.forgetGhost(p.ghost.back())
	}
}

func (p *s3fifo) forgetGhost(g *entry) {
	p.ghost.remove(g)
	delete(p.ghosts, g.hash)
}

func (p *s3fifo) restore(e *entry) {
	switch e.q {
	case qGhost:
		p.remember(e)
	case qMain:
		p.main.pushFront(e)
	default:
		e.q = qSmall
		p.small.pushFront(e)
	}
}

func (p *s3fifo) each(fn func(*entry)) {
	p.ghost.eachOldest(fn)
	p.small.eachOldest(fn)
	p.main.eachOldest(fn)
}

// lru is a plain LRU. It is not offered to users: it exists so the tests
// can show what S3-FIFO buys (a scan flushes an LRU completely).
type lru struct{ l list }

func newLRU() *lru {
	p := &lru{}
	p.l.init()
	return p
}

func (p *lru) admit(e *entry) { e.q = qMain; p.l.pushFront(e) }
func (p *lru) touch(e *entry) { p.l.remove(e); p.l.pushFront(e) }
func (p *lru) remove(e *entry) {
	p.l.remove(e)
	e.q = qNone
}

func (p *lru) evict() *entry {
	t := p.l.back()
	if t != nil {
		p.remove(t)
	}
	return t
}

func (p *lru) restore(e *entry) {
	if e.q == qGhost {
		return
	}
	p.admit(e)
}

func (p *lru) each(fn func(*entry)) { p.l.eachOldest(fn) }
