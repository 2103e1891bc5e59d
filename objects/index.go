package objects

import (
	"slices"
	"sort"
	"strings"
)

// The in-memory indexes.
//
//   - prim: primary key -> location and version of the live object. A Go map:
//     point reads are the hot path of the filesystem (lookup by path).
//   - slots[i]: an ordered set of (key i, primary key) pairs for every live
//     object, for prefix scans (slot 0 holds the primary keys themselves). A
//     secondary key may belong to several objects, hence the pair.
//
// Why our own ordered structure and not github.com/google/btree: opening a
// log must build these sets for millions of objects, and the fast way is to
// sort once and cut the sorted array into leaves (O(n) after the sort).
// google/btree has no bulk load; inserting a million sorted items one at a
// time costs more than the sort. A two-level B+tree (a sorted array of
// sorted leaves) is ~100 lines, bulk-loads trivially, and with leaves of
// leafMax items inserts/deletes cost one binary search plus a small memmove.

// pentry is a primary index entry: where the live version of an object is.
type pentry struct {
	ver   uint64
	seg   uint32
	off   uint32 // frame offset in the segment file
	size  uint32 // frame size
	crc   uint32 // frame CRC (fills padding): orders equal versions from different logs
	skeys []string
}

// losesTo reports whether a record (ver, crc) in segment seg replaces cur, the
// indexed version of the same key.
//
// The higher version wins. Equal versions are either the same record (a
// cleaner copy, or the same segment ingested twice: equal CRCs), where the
// copy in the higher segment id wins so that old segments drain, or two
// different objects that two logs gave the same version independently (see
// Log.Ingest): then the higher CRC wins, so every log that sees both picks
// the same one whatever the arrival order.
func (cur *pentry) losesTo(ver uint64, crc, seg uint32) bool {
	if cur.ver != ver {
		return cur.ver < ver
	}
	if cur.crc != crc {
		return cur.crc < crc
	}
	return cur.seg < seg
}

// item is one element of an ordered slot index. For slot 0, pk is "" (the
// key is the primary key; primary keys are never empty).
type item struct{ key, pk string }

func cmpItem(a, b item) int {
	if c := strings.Compare(a.key, b.key); c != 0 {
		return c
	}
	return strings.Compare(a.pk, b.pk)
}

func (it item) primary() string {
	if it.pk == "" {
		return it.key
	}
	return it.pk
}

const (
	leafMax  = 256
	leafFill = 192 // bulk load fill, leaving room for inserts
)

// ordered is a sorted set of items: a sorted slice of non-empty sorted leaves.
type ordered struct {
	leaves [][]item
	n      int
}

// buildOrdered bulk-loads from items, which must be sorted and unique.
func buildOrdered(items []item) *ordered {
	o := &ordered{n: len(items)}
	for len(items) > 0 {
		k := min(leafFill, len(items))
		leaf := make([]item, k, leafMax+1)
		copy(leaf, items[:k])
		o.leaves = append(o.leaves, leaf)
		items = items[k:]
	}
	return o
}

// leafFor returns the index of the first leaf whose last item is >= it
// (clamped to the last leaf).
func (o *ordered) leafFor(it item) int {
	i := sort.Search(len(o.leaves), func(j int) bool {
		l := o.leaves[j]
		return cmpItem(l[len(l)-1], it) >= 0
	})
	if i == len(o.leaves) && i > 0 {
		i--
	}
	return i
}

func (o *ordered) insert(it item) {
	if len(o.leaves) == 0 {
		o.leaves = append(o.leaves, append(make([]item, 0, leafMax+1), it))
		o.n++
		return
	}
	li := o.leafFor(it)
	leaf := o.leaves[li]
	i, found := slices.BinarySearchFunc(leaf, it, cmpItem)
	if found {
		return
	}
	leaf = slices.Insert(leaf, i, it)
	o.n++
	if len(leaf) <= leafMax {
		o.leaves[li] = leaf
		return
	}
	half := len(leaf) / 2
	right := make([]item, len(leaf)-half, leafMax+1)
	copy(right, leaf[half:])
	clear(leaf[half:])
	o.leaves[li] = leaf[:half]
	o.leaves = slices.Insert(o.leaves, li+1, right)
}

func (o *ordered) remove(it item) {
	if len(o.leaves) == 0 {
		return
	}
	li := o.leafFor(it)
	leaf := o.leaves[li]
	i, found := slices.BinarySearchFunc(leaf, it, cmpItem)
	if !found {
		return
	}
	leaf = slices.Delete(leaf, i, i+1)
	o.n--
	if len(leaf) == 0 {
		o.leaves = slices.Delete(o.leaves, li, li+1)
		return
	}
	o.leaves[li] = leaf
}

// ascend calls fn for items >= from in order until fn returns false.
func (o *ordered) ascend(from item, fn func(item) bool) {
	if len(o.leaves) == 0 {
		return
	}
	li := o.leafFor(from)
	i, _ := slices.BinarySearchFunc(o.leaves[li], from, cmpItem)
	for ; li < len(o.leaves); li, i = li+1, 0 {
		for _, it := range o.leaves[li][i:] {
			if !fn(it) {
				return
			}
		}
	}
}

// --- applying records to the indexes (callers hold Log.mu for writing) ---

func (l *Log) slot(i int) *ordered {
	for len(l.slots) <= i {
		l.slots = append(l.slots, &ordered{})
	}
	return l.slots[i]
}

func (l *Log) account(seg uint32, delta int64) {
	s := l.segs[seg]
	if s == nil {
		return
	}
	s.live += delta
	if s.live <= 0 && s.removed {
		// A ReadOnly log keeps a vanished segment open while the index still
		// points into it; the last reference going away closes it.
		delete(l.segs, seg)
		s.release()
	}
}

// applyObject makes the object the live version of key unless a newer
// version (or a tombstone killing it) is already known. Equal versions are
// the same object relocated by the cleaner (or ingested twice): the copy in
// the higher segment id (the survivor) wins, so an old segment's references
// drain away; see losesTo for equal versions of different objects.
func (l *Log) applyObject(key string, skeys []string, ver uint64, crc, seg, off, size uint32) {
	if t, ok := l.tombs[key]; ok {
		if t >= ver {
			return
		}
		if l.pruneTombs {
			// The new version hides every version the tombstone kills.
			delete(l.tombs, key)
		}
	}
	cur, ok := l.prim[key]
	if ok && !cur.losesTo(ver, crc, seg) {
		return
	}
	e := pentry{ver: ver, seg: seg, off: off, size: size, crc: crc, skeys: skeys}
	l.prim[key] = e
	if ok {
		l.account(cur.seg, -int64(cur.size))
	}
	l.account(seg, int64(size))
	if l.bulk {
		return
	}
	if !ok {
		l.slot(0).insert(item{key: key})
	}
	for i := 0; i < max(len(skeys), len(cur.skeys)); i++ {
		var o, n string
		if i < len(cur.skeys) {
			o = cur.skeys[i]
		}
		if i < len(skeys) {
			n = skeys[i]
		}
		if o == n {
			continue
		}
		if o != "" {
			l.slot(i + 1).remove(item{o, key})
		}
		if n != "" {
			l.slot(i + 1).insert(item{n, key})
		}
	}
}

// applyTombstone removes key if its live version is <= killed. ReadOnly logs
// (and replay) remember the tombstone, because a relocated older copy may
// still turn up later.
func (l *Log) applyTombstone(key string, killed uint64) {
	if l.tombs != nil && l.tombs[key] < killed {
		l.tombs[key] = killed
	}
	cur, ok := l.prim[key]
	if !ok || cur.ver > killed {
		return
	}
	delete(l.prim, key)
	l.account(cur.seg, -int64(cur.size))
	if l.bulk {
		return
	}
	l.slot(0).remove(item{key: key})
	for i, sk := range cur.skeys {
		if sk != "" {
			l.slot(i + 1).remove(item{sk, key})
		}
	}
}
