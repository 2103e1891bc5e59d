package mount

import (
	"path"
	"sync"

	"blockfs/blockstore"
	"blockfs/fs/tree"
)

// Prefetch across files. A program's start-up opens the small files of a
// few directories one after another, each a round trip to the store when
// cold; readahead within a file cannot help. When a directory is listed or
// a packed file in it opened, the packs of the directory's other files
// are fetched into the pool in parallel, up to Options.SiblingPrefetch
// bytes, starting with the packs after the opened file's (the import
// packed them in name order, so that is what a program reading the
// directory in order needs next).
//
// The prefetches go through Pool.StartPrefetch, which never takes memory
// a waiting read needs, never blocks and is bounded in number: a demand
// read never waits behind them for memory, and a prefetch that cannot
// start is dropped (the next open or listing asks again).

// DefaultSiblingPrefetch is Options.SiblingPrefetch's default (bounded
// further to a quarter of the pool).
const DefaultSiblingPrefetch = 32 << 20

// maxPackDirs bounds the directories packIndex remembers.
const maxPackDirs = 4096

// packIndex remembers, for the directories whose packs were prefetched,
// which packs their files are in, so that each open in a directory of
// thousands of files does not list it again. It is dropped when a refresh
// loads a new generation.
type packIndex struct {
	mu   sync.Mutex
	gen  uint64
	dirs map[string][]blockstore.Locator
}

// dirPacks lists the distinct packs of dir's packed files, in name order.
func (m *Mount) dirPacks(dir string) []blockstore.Locator {
	gen := m.generation()
	if locs, ok := m.knownPacks(dir, gen); ok {
		return locs
	}
	var ps packSet
	err := m.vol.Tree.ListEach(dir, func(_ string, n *tree.Node, err error) bool {
		if err == nil {
			ps.add(n)
		}
		return true
	})
	if err != nil {
		return nil // Readdir or Open report what is wrong with the directory
	}
	m.rememberPacks(dir, gen, ps.locs)
	return ps.locs
}

// knownPacks returns dir's packs if the index has them for generation gen.
func (m *Mount) knownPacks(dir string, gen uint64) ([]blockstore.Locator, bool) {
	ix := &m.packs
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.gen != gen || ix.dirs == nil || len(ix.dirs) >= maxPackDirs {
		ix.gen, ix.dirs = gen, map[string][]blockstore.Locator{}
	}
	locs, ok := ix.dirs[dir]
	return locs, ok
}

// rememberPacks notes dir's packs as read at generation gen (a listing
// notes them as it goes, so that its prefetch need not list again).
func (m *Mount) rememberPacks(dir string, gen uint64, locs []blockstore.Locator) {
	ix := &m.packs
	ix.mu.Lock()
	if ix.gen == gen && ix.dirs != nil {
		ix.dirs[dir] = locs
	}
	ix.mu.Unlock()
}

// packSet collects the distinct packs of a directory's files in order.
type packSet struct {
	seen map[blockstore.Locator]bool
	locs []blockstore.Locator
}

func (ps *packSet) add(n *tree.Node) {
	if n.Kind != tree.KindFile || !n.Packed() {
		return
	}
	for i, l := range n.Blocks {
		if l.Size != n.Len(i) && !tree.IsHole(l) && !ps.seen[l] {
			if ps.seen == nil {
				ps.seen = map[blockstore.Locator]bool{}
			}
			ps.seen[l] = true
			ps.locs = append(ps.locs, l)
		}
	}
}

// prefetchSiblings starts fetching the packs of dir's files, after and
// then before self (the opened file's pack, which its read fetches; the
// zero Locator for a listing), within the budget.
func (m *Mount) prefetchSiblings(dir string, self blockstore.Locator) {
	budget := min(m.opts.SiblingPrefetch, m.opts.PoolSize/4)
	if budget <= 0 {
		return
	}
	locs := m.dirPacks(dir)
	at := 0
	for i, l := range locs {
		if l == self {
			at = i + 1
			break
		}
	}
	var want []blockstore.Locator
	for k := range locs {
		l := locs[(at+k)%len(locs)]
		if l == self {
			continue
		}
		if budget -= l.Size; budget < 0 {
			break
		}
		want = append(want, l)
	}
	if len(want) > 0 {
		f := &siblingFetch{m: m, locs: want}
		f.done = f.finished
		f.fill()
	}
}

// siblingFetch keeps one trigger's prefetches going: the pool bounds how
// many run at once, so each that finishes starts the next.
type siblingFetch struct {
	m    *Mount
	done func()

	mu       sync.Mutex
	locs     []blockstore.Locator
	inFlight int
}

func (f *siblingFetch) fill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.locs) > 0 {
		ok, started := f.m.pool.StartPrefetch(f.locs[0], f.done)
		if !ok {
			if f.inFlight == 0 {
				f.locs = nil // nothing of ours will call back: give up
			}
			return
		}
		if started {
			f.inFlight++
			f.m.counters.prefetches.Add(1)
		}
		f.locs = f.locs[1:]
	}
}

func (f *siblingFetch) finished() {
	f.mu.Lock()
	f.inFlight--
	f.mu.Unlock()
	f.fill()
}

// prefetchForOpen is prefetchSiblings for the open of a packed file.
func (m *Mount) prefetchForOpen(p string, n *tree.Node) {
	if n.Packed() && len(n.Blocks) > 0 {
		m.prefetchSiblings(path.Dir(p), n.Blocks[0])
	}
}
