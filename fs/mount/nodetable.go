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
	parent uint64 // the parent directory's nodeid
	name   string // the entry's name in it (the latest path the kernel used)
	gen    uint64 // the low half of the identity hash (ident.gen)
	// lookups is the kernel's reference count: each entry handed to it
	// adds one, FORGET takes them back. A record at maxLookups stays.
	lookups uint32
	// children counts the records whose parent this is: a directory's
	// record outlives its children's, so that every record's path can be
	// rebuilt up to a root.
	children uint32
}

const maxLookups = math.MaxUint32

// nodeTable maps the nodeids the kernel holds to their records, for a
// mount and its snapshot views (which hash their own prefix into their
// identities, so their nodeids do not meet the main tree's).
type nodeTable struct {
	mu    sync.Mutex
	recs  map[uint64]nodeRec
	views map[uint64]*Mount // the root nodeid of each snapshot view
}

func newNodeTable() *nodeTable {
	t := &nodeTable{recs: map[uint64]nodeRec{}, views: map[uint64]*Mount{}}
	t.recs[rootIno] = nodeRec{lookups: maxLookups} // the kernel never forgets the root
	return t
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
		r, ok := t.recs[c]
		if !ok {
			return c, false
		}
		if r.gen == id.gen {
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

// add records that the kernel was handed the node id as name in
// directory parent, and returns its nodeid. A node the kernel already
// holds under another name (a hard link) takes the new one: it exists now,
// where the old one may be gone.
func (t *nodeTable) add(parent uint64, name string, id ident) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, found := t.find(id)
	r := t.recs[c]
	switch {
	case !found:
		// The name may point into a kernel request or a decoded listing:
		// a record must not pin either.
		r = nodeRec{parent: parent, name: strings.Clone(name), gen: id.gen}
		t.ref(parent)
	case r.parent != parent || r.name != name:
		t.ref(parent)
		t.unref(r.parent)
		r.parent, r.name = parent, strings.Clone(name)
	}
	if r.lookups < maxLookups {
		r.lookups++
	}
	t.recs[c] = r
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
	r, ok := t.recs[nodeid]
	if !ok || r.lookups == maxLookups {
		return
	}
	r.lookups -= uint32(min(n, uint64(r.lookups)))
	t.recs[nodeid] = r
	t.dropIfUnused(nodeid)
}

// ref and unref count a child of nodeid (not in the table: one of the
// mount's own directories, which are never dropped).
func (t *nodeTable) ref(nodeid uint64) {
	if r, ok := t.recs[nodeid]; ok {
		r.children++
		t.recs[nodeid] = r
	}
}

func (t *nodeTable) unref(nodeid uint64) {
	if r, ok := t.recs[nodeid]; ok {
		r.children--
		t.recs[nodeid] = r
		t.dropIfUnused(nodeid)
	}
}

// dropIfUnused deletes nodeid's record, and then its parent's and so on,
// while neither the kernel nor a child holds them.
func (t *nodeTable) dropIfUnused(nodeid uint64) {
	for {
		r, ok := t.recs[nodeid]
		if !ok || r.lookups > 0 || r.children > 0 {
			return
		}
		delete(t.recs, nodeid)
		p, ok := t.recs[r.parent]
		if !ok {
			return
		}
		p.children--
		t.recs[r.parent] = p
		nodeid = r.parent
	}
}

// resolve rebuilds where nodeid is: the tree serving it (the main one or
// a snapshot view's), its path in that tree, and its record's gen. ok is
// false for a nodeid the table does not hold.
func (t *nodeTable) resolve(main *Mount, nodeid uint64) (v *Mount, p string, gen uint64, ok bool) {
	t.mu.Lock()
	r, ok := t.recs[nodeid]
	if !ok {
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
		if r, ok = t.recs[c]; !ok {
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
	for c, r := range t.recs {
		if k := (staleName{r.parent, r.name}); want[k] {
			got[k] = c
		}
	}
	return got
}

// size is how many nodeids the table holds.
func (t *nodeTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.recs)
}
