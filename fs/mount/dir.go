package mount

import (
	"context"
	"fmt"
	"path"
	"strings"
	"syscall"

	"blockfs/blockstore"
	"blockfs/fs/tree"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirNode is a directory of the tree. Children are looked up in the log on
// demand; the kernel caches the answers, and the listing (dirhandle.go),
// for the mount's cache timeout or until a refresh changes them.
type dirNode struct {
	gofs.Inode
	mount *Mount
	path  string // Getattr re-reads the node: a refresh may change it
}

var (
	_ gofs.NodeLookuper       = (*dirNode)(nil)
	_ gofs.NodeOpendirHandler = (*dirNode)(nil)
	_ gofs.NodeGetattrer      = (*dirNode)(nil)
	_ gofs.NodeGetxattrer     = (*dirNode)(nil)
	_ gofs.NodeListxattrer    = (*dirNode)(nil)
	_ gofs.NodeStatfser       = (*dirNode)(nil)
)

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	m := d.mount
	defer m.timer()("lookup", &errno)
	m.counters.lookups.Add(1)
	if d.path == "/" && name == StatsFileName {
		out.Attr.Mode = syscall.S_IFREG | 0o444
		out.Attr.Ino = ^uint64(0) - 1
		out.SetEntryTimeout(0)
		out.SetAttrTimeout(0)
		return d.NewInode(ctx, &statsNode{mount: m}, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: out.Attr.Ino}), 0
	}
	if d.path == "/" && name == HiddenDirName && m.treeRoot == "" {
		return m.lookupHidden(ctx, &d.Inode, out), 0
	}
	p := path.Join(d.path, name)
	gen := m.generation() // before the lookup: the node is from gen or later
	n, err := m.vol.Tree.Lookup(p)
	if err != nil {
		return nil, m.errno("lookup", p, err)
	}
	return m.child(ctx, &d.Inode, p, n, gen, out), 0
}

// child makes the inode for node n at path p (looked up at generation gen),
// a child of parent, and fills
// out with its attributes. The kernel keeps the entry and the attributes
// for the cache timeout (long: a refresh invalidates what it changes).
func (m *Mount) child(ctx context.Context, parent *gofs.Inode, p string, n *tree.Node, gen uint64, out *fuse.EntryOut) *gofs.Inode {
	id := m.identity(p, n)
	m.fillAttr(n, id.Ino, &out.Attr)
	return parent.NewInode(ctx, m.newNode(p, n, gen), id)
}

// listed is one directory entry as read from the tree.
type listed struct {
	name string
	node *tree.Node
}

// list reads the directory, skipping entries that cannot be served (see
// badName) or decoded: one hostile entry must not hide the rest. Each is
// counted and logged once.
func (d *dirNode) list() (entries []listed, errno syscall.Errno) {
	m := d.mount
	defer m.timer()("readdir", &errno)
	m.counters.readdirs.Add(1)
	err := m.vol.Tree.ListEach(d.path, func(name string, n *tree.Node, err error) bool {
		if d.path == "/" && name == StatsFileName {
			return true
		}
		p := path.Join(d.path, name)
		if why := badName(name); why != "" {
			m.badEntry(d.path+"\x00"+name, fmt.Sprintf("readdir %s: skipping entry %q: %s", d.path, name, why))
			return true
		}
		if err != nil {
			m.badEntry(p, fmt.Sprintf("readdir %s: skipping %q: %v", d.path, name, err))
			return true
		}
		entries = append(entries, listed{name, n})
		return true
	})
	if err != nil {
		return nil, m.errno("readdir", d.path, err)
	}
	m.prefetchSiblings(d.path, blockstore.Locator{})
	return entries, 0
}

// badName says why name cannot be a directory entry ("" if it can): the
// kernel, and go-fuse, take empty names, "." and "..", and names with a
// slash or NUL or longer than 255 bytes for corruption or worse.
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

func (d *dirNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	m := d.mount
	defer m.timer()("getattr", &errno)
	m.counters.getattrs.Add(1)
	n, err := m.vol.Tree.Lookup(d.path)
	if err != nil {
		return m.errno("getattr", d.path, err)
	}
	m.fillAttr(n, m.ino(d.path, n), &out.Attr)
	return 0
}

// Getxattr and Listxattr re-read the node, as Getattr does.
func (d *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n, err := d.mount.vol.Tree.Lookup(d.path)
	if err != nil {
		return 0, d.mount.errno("getxattr", d.path, err)
	}
	return d.mount.getxattr(n, attr, dest)
}

func (d *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	n, err := d.mount.vol.Tree.Lookup(d.path)
	if err != nil {
		return 0, d.mount.errno("listxattr", d.path, err)
	}
	return listxattr(n, dest)
}

// Statfs reports the snapshot as df shows it: its bytes (the sum of its
// file sizes) in 4 KiB blocks, none free, and its number of nodes.
func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	u := d.mount.usage()
	out.Bsize = statfsBlock
	out.Frsize = statfsBlock
	out.Blocks = uint64((u.bytes + statfsBlock - 1) / statfsBlock)
	out.Files = uint64(u.nodes)
	out.NameLen = maxNameLen
	return 0
}

const statfsBlock = 4096
