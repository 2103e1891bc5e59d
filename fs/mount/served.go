package mount

import "sync"

// servedGens counts the open file handles per generation their node was
// read at. A handle reads the version it opened for as long as it is
// open, however many refreshes later, so the snapshots from the oldest of
// those generations on must keep their blocks: the mount's gc lease names
// OldestServed (docs/gc.md).
type servedGens struct {
	mu   sync.Mutex
	open map[uint64]int // generation -> open handles
}

func (m *Mount) holdGeneration(gen uint64) {
	m.served.mu.Lock()
	if m.served.open == nil {
		m.served.open = map[uint64]int{}
	}
	m.served.open[gen]++
	m.served.mu.Unlock()
}

func (m *Mount) dropGeneration(gen uint64) {
	m.served.mu.Lock()
	if m.served.open[gen]--; m.served.open[gen] <= 0 {
		delete(m.served.open, gen)
	}
	m.served.mu.Unlock()
}

// generation is the volume's generation now. The volume stores it after
// ingesting that generation's metadata, so a tree read after this call is
// of this generation or a later one.
func (m *Mount) generation() uint64 { return m.vol.MetaStats().Generation }

// OldestServed is the oldest snapshot (generation) the mount still serves:
// that of its oldest open handle, or the volume's current one. An open
// reads its node from the tree as it is then, so it never starts on a
// version older than the volume's generation at the open.
func (m *Mount) OldestServed() uint64 {
	oldest := m.generation()
	m.served.mu.Lock()
	for g := range m.served.open {
		oldest = min(oldest, g)
	}
	m.served.mu.Unlock()
	return oldest
}
