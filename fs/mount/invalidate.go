package mount

import (
	"errors"
	"path"
	"strings"
	"sync/atomic"

	"blockfs/fs/tree"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The kernel keeps names, attributes and listings for a long time (the
// cache timeout), which is right while the tree cannot change. A refresh
// that ingests new metadata reports the paths it changed
// (volume.RefreshNotify), and the mount tells the kernel to drop exactly
// what it may hold of them: the entry (a name's dentry, positive or
// negative; a delete notification for a name that is gone, so inotify
// watchers hear of it) and the listing of its directory, which the kernel
// also caches (FOPEN_CACHE_DIR). A directory's nodeid follows from its
// path (ino.go), so whether the kernel holds it is one node table lookup;
// a path whose directory the kernel does not hold cannot be cached by it
// either (a kernel dentry pins its parent's inode), so it costs nothing.

// invalidations count what refreshes told the kernel to drop.
type invalidations struct {
	entries, deletes, listings atomic.Int64
}

// staleName is a name in a directory the kernel may know.
type staleName struct {
	dir  uint64 // the directory's nodeid
	name string
}

// pendingInval collects, during a refresh, what its changed paths touch.
type pendingInval struct {
	m        *Mount
	listings map[uint64]bool      // directory nodeids
	names    map[staleName]string // -> the entry's path
}

func (m *Mount) newPendingInval() *pendingInval {
	return &pendingInval{m: m, listings: map[uint64]bool{}, names: map[staleName]string{}}
}

// add notes the changed tree path p. It runs under the volume's lock and
// so only looks at the node table, never the tree or the kernel.
func (pi *pendingInval) add(p string) {
	p = tree.CleanPath(p)
	if p == "/" {
		// The root's own node: its attributes, which the kernel got from
		// a GETATTR of the root; drop them with its listing.
		pi.listings[rootIno] = true
		return
	}
	dir, name := path.Split(p)
	dir = tree.CleanPath(dir)
	parent, known := pi.m.nodes.lookup(pi.m.dirIdentity(dir))
	if !known {
		return
	}
	pi.listings[parent] = true
	pi.names[staleName{parent, strings.Clone(name)}] = strings.Clone(p)
}

// apply sends the notifications, outside the volume's lock: the kernel
// may hold a directory's lock while it waits for a request to this mount.
func (pi *pendingInval) apply() {
	m := pi.m
	gone := map[staleName]bool{}
	for s, p := range pi.names {
		if _, err := m.vol.Tree.Lookup(p); errors.Is(err, tree.ErrNotExist) {
			gone[s] = true
		}
	}
	var held map[staleName]uint64
	if len(gone) > 0 {
		held = m.nodes.named(gone) // the nodeids the kernel holds of them
	}
	for s := range pi.names {
		if child, ok := held[s]; ok {
			// ENOENT: the kernel had no entry for it, which is as good.
			if st := m.server.DeleteNotify(s.dir, child, s.name); st == fuse.OK || st == fuse.ENOENT {
				m.inval.deletes.Add(1)
				continue
			}
		}
		_ = m.server.EntryNotify(s.dir, s.name)
		m.inval.entries.Add(1)
	}
	for d := range pi.listings {
		_ = m.server.InodeNotify(d, 0, 0)
		m.inval.listings.Add(1)
	}
}

// fuseStats is the FUSE counters with the invalidations and the node
// table's size.
func (m *Mount) fuseStats() FuseStats {
	st := m.counters.snapshot()
	st.InvalEntries, st.InvalDeletes, st.InvalListings = m.inval.entries.Load(), m.inval.deletes.Load(), m.inval.listings.Load()
	st.NodesHeld = int64(m.nodes.size())
	st.RelistedWithAttrs = m.namesOnly.drop.Load()
	return st
}
