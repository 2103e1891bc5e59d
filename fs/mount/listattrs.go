package mount

import (
	"sync"
	"sync/atomic"
)

// A listing the kernel read without attributes (plain READDIR, the
// adaptive mode's choice for a walk of names, dirhandle.go) is cached by
// it that way: a reader that comes later, lists the same directories and
// stats their files (an ls -lR after a find, a second job after an
// indexer) would then look up every file, one round trip each, since the
// kernel asks again only for listings it does not hold. So the mount
// remembers which listings went out as names only, and the first LOOKUP of
// a file in one of them (a reader using the entries) drops all of them
// from the kernel's cache: the reader pays the LOOKUPs of the directory it
// is in, and reads the next ones afresh, with attributes if it stats.

// maxNamesOnly bounds the listings remembered; past it, one more goes
// unremembered (its reader pays its LOOKUPs, nothing worse).
const maxNamesOnly = 1 << 16

// namesOnly is the set of directory nodeids whose listing the kernel got
// without attributes since the last drop.
type namesOnly struct {
	mu   sync.Mutex
	dirs map[uint64]struct{}
	any  atomic.Bool  // dirs is not empty: a lookup's check costs no lock
	drop atomic.Int64 // listings dropped so that they are read again
}

// listed notes that the kernel got (part of) dir's listing as names.
func (s *namesOnly) listed(dir uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirs == nil {
		s.dirs = map[uint64]struct{}{}
	}
	if len(s.dirs) < maxNamesOnly {
		s.dirs[dir] = struct{}{}
		s.any.Store(true)
	}
}

// used is called at a LOOKUP of a file in dir: if dir's listing went out
// as names, it returns every remembered listing (forgetting them) for the
// caller to drop from the kernel's cache, else nothing.
func (s *namesOnly) used(dir uint64) []uint64 {
	if !s.any.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.dirs[dir]; !ok {
		return nil
	}
	dirs := make([]uint64, 0, len(s.dirs))
	for d := range s.dirs {
		dirs = append(dirs, d)
	}
	clear(s.dirs)
	s.any.Store(false)
	return dirs
}

// relistWithAttrs drops the listings the kernel holds as names only once a
// reader looks up a file of one of them (see namesOnly). It runs in the
// LOOKUP before the answer, so that the reader's next listing is read
// afresh; a listing notification waits for no request of this mount.
func (m *Mount) relistWithAttrs(dir uint64) {
	for _, d := range m.namesOnly.used(dir) {
		_ = m.server.InodeNotify(d, 0, 0)
		m.namesOnly.drop.Add(1)
	}
}
