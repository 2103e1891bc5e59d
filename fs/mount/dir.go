package mount

import (
	"fmt"
	"path"
	"strings"
	"syscall"

	"blockfs/blockstore"
	"blockfs/fs/tree"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Directories of the tree. Children are looked up in the tree on demand;
// the kernel caches the answers (positive and negative), and listings
// (dirhandle.go), for the mount's cache timeout or until a refresh
// changes them (invalidate.go).

// lookup answers the kernel's lookup of name in the directory parent.
func (fs *rawFS) lookup(parent uint64, name string, out *fuse.EntryOut) (errno syscall.Errno) {
	if name == "." || name == ".." {
		// Sent only to reconnect NFS-exported handles, which the mount
		// does not offer.
		return syscall.ESTALE
	}
	v, dir, _, ok := fs.m.nodes.resolve(fs.m, parent)
	if !ok {
		return syscall.ESTALE
	}
	defer v.timer()("lookup", &errno)
	v.counters.lookups.Add(1)
	switch {
	case dir == "/" && name == StatsFileName:
		lookupStats(out)
		return 0
	case parent == rootIno && name == HiddenDirName:
		fs.m.lookupHidden(out)
		return 0
	}
	p := childPath(dir, name)
	n, err := v.vol.Tree.Lookup(p)
	if err != nil {
		errno := v.errno("lookup", p, err)
		if errno == syscall.ENOENT {
			// A name that appears with a refresh is invalidated like any
			// other change, so absences are kept as long as entries.
			out.NodeId = 0
			out.SetEntryTimeout(v.opts.CacheTimeout)
			return 0
		}
		return errno
	}
	if n.Kind != tree.KindDir {
		fs.m.relistWithAttrs(parent)
	}
	v.entry(parent, name, n, v.identity(p, n), out)
	return 0
}

// entry hands the kernel node n, name in directory parent:
// its nodeid, counted as one more reference the kernel holds, and its
// attributes, which the kernel keeps for the cache timeout (long: a
// refresh invalidates what it changes).
func (m *Mount) entry(parent uint64, name string, n *tree.Node, id ident, out *fuse.EntryOut) {
	out.NodeId = m.nodes.add(parent, name, id)
	out.Generation = id.gen
	m.fillAttr(n, id.ino, &out.Attr)
	out.SetEntryTimeout(m.opts.CacheTimeout)
	out.SetAttrTimeout(m.opts.CacheTimeout)
}

// getattr re-reads the node: the kernel asks only when its cached
// attributes expired or a refresh dropped them.
func (fs *rawFS) getattr(nodeid uint64, out *fuse.AttrOut) (errno syscall.Errno) {
	v, _, n, id, errno := fs.node("getattr", nodeid)
	if errno != 0 {
		return errno
	}
	defer v.timer()("getattr", &errno)
	v.counters.getattrs.Add(1)
	v.fillAttr(n, id.ino, &out.Attr)
	out.SetTimeout(v.opts.CacheTimeout)
	return 0
}

// listed is one directory entry as read from the tree.
type listed struct {
	name string
	node *tree.Node
}

// list reads the directory at p, skipping entries that cannot be served
// (see badName) or decoded: one hostile entry must not hide the rest.
// Each is counted and logged once.
func (m *Mount) list(p string) (entries []listed, errno syscall.Errno) {
	defer m.timer()("readdir", &errno)
	m.counters.readdirs.Add(1)
	gen := m.generation()
	_, noted := m.knownPacks(p, gen)
	var ps packSet
	err := m.vol.Tree.ListEach(p, func(name string, n *tree.Node, err error) bool {
		if err == nil {
			ps.add(n) // as dirPacks would: packs of every file, listed or not
		}
		if p == "/" && name == StatsFileName {
			return true
		}
		if why := badName(name); why != "" {
			m.badEntry(p+"\x00"+name, fmt.Sprintf("readdir %s: skipping entry %q: %s", p, name, why))
			return true
		}
		if err != nil {
			m.badEntry(path.Join(p, name), fmt.Sprintf("readdir %s: skipping %q: %v", p, name, err))
			return true
		}
		entries = append(entries, listed{name, n})
		return true
	})
	if err != nil {
		return nil, m.errno("readdir", p, err)
	}
	if !noted {
		m.rememberPacks(p, gen, ps.locs)
	}
	m.prefetchSiblings(p, blockstore.Locator{})
	return entries, 0
}

// childPath is the path of name in the directory at dir, for a name that
// is one component (the kernel's, or a listing's that passed badName):
// path.Join's cleaning would cost more than the rest of a listed entry.
func childPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// badName says why name cannot be a directory entry ("" if it can): the
// kernel takes empty names, "." and "..", and names with a slash or NUL
// or longer than 255 bytes for corruption or worse.
func badName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case name == "." || name == "..":
		return "reserved name"
	case strings.ContainsAny(name, "/\x00"):
		return "name contains / or NUL"
	case len(name) > maxNameLen:
		return fmt.Sprintf("name of %d bytes (at most %d)", len(name), maxNameLen)
	}
	return ""
}

// maxNameLen is the longest name the kernel passes (NAME_MAX).
const maxNameLen = 255

// statfs reports the snapshot as df shows it: its bytes (the sum of its
// file sizes) in 4 KiB blocks, none free, and its number of nodes.
func (m *Mount) statfs(out *fuse.StatfsOut) {
	u := m.usage()
	out.Bsize = statfsBlock
	out.Frsize = statfsBlock
	out.Blocks = uint64((u.bytes + statfsBlock - 1) / statfsBlock)
	out.Files = uint64(u.nodes)
	out.NameLen = maxNameLen
}

const statfsBlock = 4096
