package mount

import (
	"math"
	"slices"
	"strings"
	"sync"
)

// The kernel holds an inode for every name it looked up or was handed by
// READDIRPLUS, until it forgets it (FORGET, BATCH_FORGET), and with long
// cache timeouts that is every name a walk met. So what the mount keeps
// per inode the kernel holds is as small as it can be: where the node is
// (its parent's nodeid and its name) and which node it is (the rest of its
// identity hash), not the node. Attributes, block lists and link targets
// are read from the tree again when the kernel asks (it rarely does: it
// caches them), and an open file's handle holds its node, so a handle
// reads the version it opened whatever refreshes do.
//
// A nodeid is the node's identity hash (ino.go), so the nodeid of a
// directory follows from its path: a refresh finds what the kernel may
// hold of a changed path without a table of paths. When another identity
// already holds that nodeid (a hash collision), the next free one is
// taken; the record's gen says whose it is.

// nodeRec is what the mount keeps for one nodeid the kernel holds.
type nodeRec struct {
	id     uint64 // its nodeid
	parent uint64 // the parent directory's nodeid; the next free record's position+1 in a free one
	name   string // the entry's name in it (the latest path the kernel used)
	gen    uint32 // the low bits of the identity hash (ident.gen), with the nodeid telling it from another
	// refs are the kernel's references (each entry handed to it adds one,
	// FORGET takes them back) and one per child record: a directory's
	// record outlives its children's, so that every record's path can be
	// rebuilt up to a root. A record at maxRefs stays.
	refs uint32
}

const maxRefs = math.MaxUint32

// nodeTable maps the nodeids the kernel holds to their records, for a
// mount and its snapshot views (which hash their own prefix into their
// identities, so their nodeids do not meet the main tree's). The records
// are in one slice, found by an index of positions (nodeindex.go), rather
// than in a map of records: a Go map keeps slack for its growth (up to
// half its slots free), and slack in a slot of 8 bytes costs less than in
// one of 48. Neither shrinks: after the kernel forgets, the table keeps
// the room of the most it held at once, and fills it again first.
type nodeTable struct {
	mu    sync.Mutex
	index posIndex // nodeid -> position in recs
	key   nodeidOf // the nodeid of the record at a position, for index
	recs  []nodeRec
	free  uint32            // position+1 of the first free record (0: none), chained through parent
	views map[uint64]*Mount // the root nodeid of each snapshot view
}

func newNodeTable() *nodeTable {
	t := &nodeTable{views: map[uint64]*Mount{}}
	t.key = func(pos uint32) uint64 { return t.recs[pos].id }
	t.put(rootIno, nodeRec{refs: maxRefs}) // the kernel never forgets the root
	return t
}

// get returns nodeid's record, valid until the table next grows.
func (t *nodeTable) get(nodeid uint64) *nodeRec {
	i, ok := t.index.get(nodeid, t.key)
	if !ok {
		return nil
	}
	return &t.recs[i]
}

// put stores a new record for nodeid, in a free position if there is one.
func (t *nodeTable) put(nodeid uint64, r nodeRec) {
	r.id = nodeid
	if t.free == 0 {
		t.recs = append(t.recs, r)
		t.index.set(nodeid, uint32(len(t.recs)-1))
		return
	}
	i := t.free - 1
	t.free = uint32(t.recs[i].parent)
	t.recs[i] = r
	t.index.set(nodeid, i)
}

// remove frees nodeid's record.
func (t *nodeTable) remove(nodeid uint64) {
	i, _ := t.index.get(nodeid, t.key)
	t.index.del(nodeid, t.key)
	t.recs[i] = nodeRec{parent: uint64(t.free)}
	t.free = i + 1
}

// find returns the nodeid of identity id: that of the record whose gen is
// id's, probing on from id.ino past records of other identities, or
// where a new record for it goes (found false). A record dropped from the
// middle of a probe sequence can make a later identity on it get a second
// nodeid: harmless (the kernel replaces an entry whose nodeid changed),
// and as rare as a collision.
func (t *nodeTable) find(id ident) (nodeid uint64, found bool) {
	c := id.ino
	for {
		r := t.get(c)
		if r == nil {
			return c, false
		}
		if r.gen == uint32(id.gen) {
			return c, true
		}
		if c++; c > ^uint64(0)-reservedInos {
			c = reservedInos
		}
	}
}

// lookup returns the nodeid of id if the table holds it.
func (t *nodeTable) lookup(id ident) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.find(id)
}

// holds says whether nodeid is where identity id is.
func (t *nodeTable) holds(nodeid uint64, id ident) bool {
	c, found := t.lookup(id)
	return found && c == nodeid
}

// add records that the kernel was handed the node id as name in
// directory parent, and returns its nodeid. A node the kernel already
// holds under another name (a hard link) takes the new one: it exists now,
// where the old one may be gone.
func (t *nodeTable) add(parent uint64, name string, id ident) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, found := t.find(id)
	if !found {
		// The name may point into a kernel request or a decoded listing:
		// a record must not pin either.
		t.ref(parent)
		t.put(c, nodeRec{parent: parent, name: strings.Clone(name), gen: uint32(id.gen), refs: 1})
		return c
	}
	r := t.get(c)
	if r.refs < maxRefs {
		r.refs++
	}
	if r.parent != parent || r.name != name {
		old := r.parent
		r.parent, r.name = parent, strings.Clone(name)
		t.ref(parent)
		t.unref(old)
	}
	return c
}

// addView records the root of a snapshot view, handed to the kernel as
// name in directory parent (which is not in the table).
func (t *nodeTable) addView(parent uint64, name string, id ident, v *Mount) uint64 {
	c := t.add(parent, name, id)
	t.mu.Lock()
	t.views[c] = v
	t.mu.Unlock()
	return c
}

// forget gives back n of the kernel's references to nodeid; the record
// goes with the last, unless it still has children.
func (t *nodeTable) forget(nodeid, n uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.release(nodeid, n)
}

// ref counts a child of nodeid (not in the table: one of the mount's own
// directories, which are never dropped).
func (t *nodeTable) ref(nodeid uint64) {
	if r := t.get(nodeid); r != nil && r.refs < maxRefs {
		r.refs++
	}
}

func (t *nodeTable) unref(nodeid uint64) { t.release(nodeid, 1) }

// release drops n references to nodeid, and the record with the last,
// then its parent's reference and so on up.
func (t *nodeTable) release(nodeid, n uint64) {
	for {
		r := t.get(nodeid)
		if r == nil || r.refs == maxRefs {
			return
		}
		r.refs -= uint32(min(n, uint64(r.refs)))
		if r.refs > 0 {
			return
		}
		parent := r.parent
		t.remove(nodeid)
		nodeid, n = parent, 1
	}
}

// resolve rebuilds where nodeid is: the tree serving it (the main one or
// a snapshot view's), its path in that tree, and its record's gen. ok is
// false for a nodeid the table does not hold.
func (t *nodeTable) resolve(main *Mount, nodeid uint64) (v *Mount, p string, gen uint32, ok bool) {
	t.mu.Lock()
	r := t.get(nodeid)
	if r == nil {
		t.mu.Unlock()
		return nil, "", 0, false
	}
	gen = r.gen
	var names []string
	for c := nodeid; ; c = r.parent {
		if c == rootIno {
			v = main
			break
		}
		if view := t.views[c]; view != nil {
			v = view
			break
		}
		if r = t.get(c); r == nil {
			t.mu.Unlock()
			return nil, "", 0, false
		}
		names = append(names, r.name)
	}
	t.mu.Unlock()
	slices.Reverse(names)
	return v, "/" + strings.Join(names, "/"), gen, true
}

// named returns the nodeids of the records named (parent, name) among
// want, in one pass over the table (for a refresh's deleted names).
func (t *nodeTable) named(want map[staleName]bool) map[staleName]uint64 {
	got := map[staleName]uint64{}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.recs {
		r := &t.recs[i]
		if k := (staleName{r.parent, r.name}); r.refs > 0 && want[k] {
			got[k] = r.id
		}
	}
	return got
}

// size is how many nodeids the table holds.
func (t *nodeTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.index.count
}
