package mount

import "sync"

// handles are the mount's open files and directories, by the handle
// number the kernel passes back with every request on them. A handle
// holds what it was opened on (a file's node, a directory's listing), so
// it does not depend on the node table.
type handles struct {
	mu   sync.Mutex
	next uint64
	open map[uint64]any
}

// add registers h and returns its number (never 0).
func (hs *handles) add(h any) uint64 {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.open == nil {
		hs.open = map[uint64]any{}
	}
	hs.next++
	hs.open[hs.next] = h
	return hs.next
}

func (hs *handles) get(fh uint64) any {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.open[fh]
}

// take removes handle fh and returns it.
func (hs *handles) take(fh uint64) any {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.open[fh]
	delete(hs.open, fh)
	return h
}
