package mount

import (
	"errors"
	"path"
	"strings"
	"sync/atomic"
	"syscall"

	"blockfs/fs/tree"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// The kernel keeps names, attributes and listings for a long time (the
// cache timeout), which is right while the tree cannot change. A refresh
// that ingests new metadata reports the paths it changed
// (volume.RefreshNotify), and the mount tells the kernel to drop exactly
// what it may hold of them: the entry (a name's dentry, positive or
// negative; NotifyDelete for a name that is gone, so inotify watchers hear
// of it) and the listing of its directory, which the kernel also caches
// (FOPEN_CACHE_DIR). A path whose directory go-fuse does not know cannot
// be cached by the kernel either (a kernel dentry pins its parent's inode,
// and go-fuse keeps every inode the kernel holds), so it costs nothing.

// invalidations count what refreshes told the kernel to drop.
type invalidations struct {
	entries, deletes, listings atomic.Int64
}

// staleName is a name in a directory the kernel may know.
type staleName struct {
	dir  *gofs.Inode
	name string
}

// pendingInval collects, during a refresh, what its changed paths touch.
type pendingInval struct {
	m        *Mount
	listings map[*gofs.Inode]string // directory inode -> its path
	names    map[staleName]string   // -> the entry's path
}

func (m *Mount) newPendingInval() *pendingInval {
	return &pendingInval{m: m, listings: map[*gofs.Inode]string{}, names: map[staleName]string{}}
}

// add notes the changed tree path p. It runs under the volume's lock and
// so only looks at go-fuse's inode tree, never the kernel.
func (pi *pendingInval) add(p string) {
	p = tree.CleanPath(p)
	if p == "/" {
		// The root's own node: its attributes, which the kernel got from
		// a GETATTR of inode 1; drop them with its listing.
		pi.listings[pi.m.rootInode()] = "/"
		return
	}
	dir, name := path.Split(p)
	parent := pi.m.knownDir(dir)
	if parent == nil {
		return
	}
	dir = tree.CleanPath(dir)
	pi.listings[parent] = dir
	pi.names[staleName{parent, strings.Clone(name)}] = strings.Clone(p)
}

// knownDir returns the inode of directory dir if go-fuse has it, else nil.
func (m *Mount) knownDir(dir string) *gofs.Inode {
	n := m.rootInode()
	for _, part := range strings.Split(dir, "/") {
		if part == "" {
			continue
		}
		if n = n.GetChild(part); n == nil {
			return nil
		}
	}
	if !n.IsDir() {
		return nil
	}
	return n
}

func (m *Mount) rootInode() *gofs.Inode { return &m.root.Inode }

// apply sends the notifications, outside the volume's lock: the kernel
// may hold a directory's lock while it waits for a request to this mount.
func (pi *pendingInval) apply() {
	m := pi.m
	for s, p := range pi.names {
		if child := s.dir.GetChild(s.name); child != nil {
			if _, err := m.vol.Tree.Lookup(p); errors.Is(err, tree.ErrNotExist) {
				if errno := s.dir.NotifyDelete(s.name, child); errno == 0 || errno == syscall.ENOENT {
					m.inval.deletes.Add(1)
					continue
				}
			}
		}
		// ENOENT: the kernel had no entry for it, which is as good.
		_ = s.dir.NotifyEntry(s.name)
		m.inval.entries.Add(1)
	}
	for d := range pi.listings {
		_ = d.NotifyContent(0, 0)
		m.inval.listings.Add(1)
	}
}

// fuseStats is the FUSE counters with the invalidations.
func (m *Mount) fuseStats() FuseStats {
	st := m.counters.snapshot()
	st.InvalEntries, st.InvalDeletes, st.InvalListings = m.inval.entries.Load(), m.inval.deletes.Load(), m.inval.listings.Load()
	return st
}
