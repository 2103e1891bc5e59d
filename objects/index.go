package objects

import (
	"hash/maphash"
	"slices"
	"sort"
	"strings"
)

// The in-memory indexes.
//
//   - prim: primary key -> location and version of the live object. Go maps,
//     sharded by a seeded hash of the key (shards[shardIndex(h, len(shards))]): point reads
//     are the hot path of the filesystem (lookup by path), and replay/Ingest
//     build the shards in parallel, each from the records of its own keys,
//     so that every insert lands in a small map that stays in cache (see
//     applyBatch). The shard of a key also holds its tombstone.
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
	key   string // the primary key (shards are keyed by its hash)
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

// orderedBuilder bulk-loads an ordered set from items added in any order
// (unique): while they come sorted they go straight into leaves; the first
// one out of order turns it into collect and sort.
type orderedBuilder struct {
	o      ordered
	last   item
	sorted []item // nil while items come in order
	unord  bool
}

func (b *orderedBuilder) add(it item) {
	if !b.unord && b.o.n > 0 && cmpItem(it, b.last) <= 0 {
		b.unord = true
		b.sorted = b.flatten()
	}
	if b.unord {
		b.sorted = append(b.sorted, it)
		return
	}
	n := len(b.o.leaves)
	if n == 0 || len(b.o.leaves[n-1]) == leafFill {
		b.o.leaves = append(b.o.leaves, make([]item, 0, leafMax+1))
		n++
	}
	b.o.leaves[n-1] = append(b.o.leaves[n-1], it)
	b.o.n++
	b.last = it
}

func (b *orderedBuilder) flatten() []item {
	out := make([]item, 0, 2*b.o.n+1024)
	for _, l := range b.o.leaves {
		out = append(out, l...)
	}
	return out
}

// items returns everything added, sorted.
func (b *orderedBuilder) items() []item {
	if !b.unord {
		return b.flatten()
	}
	slices.SortFunc(b.sorted, cmpItem)
	return slices.Compact(b.sorted)
}

func (b *orderedBuilder) build() *ordered {
	if !b.unord {
		o := b.o
		return &o
	}
	return buildOrdered(b.items())
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

// insertMany inserts its (unique items, in any order). Many items at once
// are merged in one pass (sort, then merge with the existing leaves and
// bulk-load) instead of one binary search and memmove each.
func (o *ordered) insertMany(its []item) {
	if len(its) < 64 || len(its)*16 < o.n {
		for _, it := range its {
			o.insert(it)
		}
		return
	}
	if !slices.IsSortedFunc(its, cmpItem) {
		slices.SortFunc(its, cmpItem)
	}
	its = slices.Compact(its)
	if o.n == 0 {
		*o = *buildOrdered(its)
		return
	}
	out := make([]item, 0, o.n+len(its))
	i := 0
	for _, leaf := range o.leaves {
		for _, it := range leaf {
			for i < len(its) && cmpItem(its[i], it) < 0 {
				out = append(out, its[i])
				i++
			}
			if i < len(its) && its[i] == it {
				i++ // already present
			}
			out = append(out, it)
		}
	}
	out = append(out, its[i:]...)
	*o = *buildOrdered(out)
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

// --- the sharded primary index ---

// shard holds the primary entries and the tombstones of the keys whose hash
// falls in it. Protected by Log.mu (applyBatch's workers own disjoint shards
// while the caller holds Log.mu for writing).
//
// prim is keyed by the key's 64-bit hash, not by the key: building it then
// reads no key bytes (they are far away in memory, and reading them was
// most of the cost of a large replay). Entries carry their key; a key whose
// hash is taken by another key (never seen in practice, but possible) goes
// to over, keyed by the key itself.
type shard struct {
	prim  map[uint64]pentry
	over  map[string]pentry
	tombs map[string]uint64 // killed versions (a writer keeps only those of keys with no live object)
}

func (sh *shard) find(key string, h uint64) (pentry, bool) {
	if e, ok := sh.prim[h]; ok && e.key == key {
		return e, true
	}
	if len(sh.over) > 0 {
		e, ok := sh.over[key]
		return e, ok
	}
	return pentry{}, false
}

// set stores e (e.key is key) as key's entry.
func (sh *shard) set(h uint64, e pentry) {
	if cur, ok := sh.prim[h]; !ok || cur.key == e.key {
		if ok || len(sh.over) == 0 {
			sh.prim[h] = e
			return
		}
		if _, in := sh.over[e.key]; !in {
			sh.prim[h] = e
			return
		}
	}
	if sh.over == nil {
		sh.over = map[string]pentry{}
	}
	sh.over[e.key] = e
}

func (sh *shard) del(key string, h uint64) {
	if e, ok := sh.prim[h]; ok && e.key == key {
		delete(sh.prim, h)
		return
	}
	delete(sh.over, key)
}

func (sh *shard) len() int { return len(sh.prim) + len(sh.over) }

const (
	minShards   = 256
	maxShards   = 65536
	shardTarget = 1600
)

// shardsFor chooses the shard count for a log of n objects: shards of about
// shardTarget entries (maps of ~160 KiB, which stay in a core's cache while
// they are built). Not a power of two (see shardIndex): a Go map's capacity
// is, and grows at 7/8 full, so shards of 1600 fill maps of 2048 slots to
// 78% (power-of-two shard counts gave shards anywhere from 1024 to 2048
// entries, and maps of 4096 slots half full: twice the memory for the
// garbage collector to scan).
func shardsFor(n int) int {
	return min(maxShards, max(minShards, (n+shardTarget-1)/shardTarget))
}

// shardIndex maps hash h to one of n shards (by its top 32 bits: fast
// range reduction, no division).
func shardIndex(h uint64, n int) int { return int((h >> 32) * uint64(n) >> 32) }

// initShards (re)creates n empty shards. Only before the log is in use.
func (l *Log) initShards(n int) {
	if l.shards != nil && len(l.shards) == n && l.objects() == 0 {
		return
	}
	l.shards = make([]shard, n)
	for i := range l.shards {
		l.shards[i] = shard{prim: map[uint64]pentry{}, tombs: map[string]uint64{}}
	}
}

func (l *Log) hash(key string) uint64 { return maphash.String(l.seed, key) }

// shardOf returns key's shard and hash.
func (l *Log) shardOf(key string) (*shard, uint64) {
	h := l.hash(key)
	return &l.shards[shardIndex(h, len(l.shards))], h
}

// get returns key's primary entry. Callers hold Log.mu.
func (l *Log) get(key string) (pentry, bool) {
	sh, h := l.shardOf(key)
	return sh.find(key, h)
}

// getBytes is get without converting key to a string.
func (l *Log) getBytes(key []byte) (pentry, bool) {
	h := maphash.Bytes(l.seed, key)
	return l.shards[shardIndex(h, len(l.shards))].find(string(key), h)
}

// objects is the number of live objects. Callers hold Log.mu.
func (l *Log) objects() int {
	n := 0
	for i := range l.shards {
		n += l.shards[i].len()
	}
	return n
}

// putObject makes e (an object record of key e.key, hash h) the live
// version of its key unless a newer version, or a tombstone killing it, is
// already known. It returns the entry it replaced (had: there was one) and
// whether e went in.
func (sh *shard) putObject(h uint64, e pentry, pruneTombs bool) (cur pentry, had, ok bool) {
	key := e.key
	if t, ok := sh.tombs[key]; ok {
		if t >= e.ver {
			return pentry{}, false, false
		}
		if pruneTombs {
			// The new version hides every version the tombstone kills.
			delete(sh.tombs, key)
		}
	}
	cur, had = sh.find(key, h)
	if had && !cur.losesTo(e.ver, e.crc, e.seg) {
		return cur, had, false
	}
	sh.set(h, e)
	return cur, had, true
}

// killObject records a tombstone for key and removes its live entry if that
// is a version <= killed, returning the removed entry.
func (sh *shard) killObject(key string, h uint64, killed uint64) (pentry, bool) {
	if sh.tombs[key] < killed {
		sh.tombs[key] = killed
	}
	cur, ok := sh.find(key, h)
	if !ok || cur.ver > killed {
		return pentry{}, false
	}
	sh.del(key, h)
	return cur, true
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
//
// One record at a time (commits, Refresh); replay and Ingest apply whole
// segments with applyBatch, to the same effect.
func (l *Log) applyObject(key string, skeys []string, ver uint64, crc, seg, off, size uint32) {
	e := pentry{key: key, ver: ver, seg: seg, off: off, size: size, crc: crc, skeys: skeys}
	sh, h := l.shardOf(key)
	cur, ok, in := sh.putObject(h, e, l.pruneTombs)
	if !in {
		return
	}
	if ok {
		l.account(cur.seg, -int64(cur.size))
	}
	l.account(seg, int64(size))
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

// applyTombstone removes key if its live version is <= killed. The
// tombstone is remembered, because a relocated older copy (or an ingested
// one) may still turn up later; writers drop it once a newer version of the
// key is live (pruneTombs).
func (l *Log) applyTombstone(key string, killed uint64) {
	sh, h := l.shardOf(key)
	cur, ok := sh.killObject(key, h, killed)
	if !ok {
		return
	}
	l.account(cur.seg, -int64(cur.size))
	l.removeItems(key, cur.skeys)
}

// removeItems removes a dead object's items from the ordered indexes.
func (l *Log) removeItems(key string, skeys []string) {
	l.slot(0).remove(item{key: key})
	for i, sk := range skeys {
		if sk != "" {
			l.slot(i + 1).remove(item{sk, key})
		}
	}
}
