package blockstore

// lruList is an intrusive doubly-linked list of unreferenced, ready buffers,
// most recently used at the front. Intrusive links make moving a buffer on
// and off the list O(1) and allocation-free, which is what keeps the hit
// path cheap.
type lruList struct {
	root Buffer // sentinel: root.next is the front, root.prev the back
	n    int
}

func (l *lruList) init() { l.root.next, l.root.prev = &l.root, &l.root }

func (l *lruList) pushFront(b *Buffer) {
	b.prev, b.next = &l.root, l.root.next
	b.prev.next, b.next.prev = b, b
	l.n++
}

func (l *lruList) remove(b *Buffer) {
	b.prev.next, b.next.prev = b.next, b.prev
	b.prev, b.next = nil, nil
	l.n--
}

// back returns the least recently used buffer, or nil.
func (l *lruList) back() *Buffer {
	if l.n == 0 {
		return nil
	}
	return l.root.prev
}

// inList reports whether b is linked into an lruList.
func (b *Buffer) inList() bool { return b.next != nil }
