package mount

import (
	"context"
	"path"
	"syscall"

	"blockfs/fs/tree"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirNode is a directory of the tree. Children are looked up in the log on
// demand; the kernel caches the answers for the mount's cache timeout.
type dirNode struct {
	gofs.Inode
	mount *Mount
	path  string // Getattr re-reads the node: a refresh may change it
}

var (
	_ gofs.NodeLookuper    = (*dirNode)(nil)
	_ gofs.NodeReaddirer   = (*dirNode)(nil)
	_ gofs.NodeGetattrer   = (*dirNode)(nil)
	_ gofs.NodeGetxattrer  = (*dirNode)(nil)
	_ gofs.NodeListxattrer = (*dirNode)(nil)
	_ gofs.NodeStatfser    = (*dirNode)(nil)
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
	p := path.Join(d.path, name)
	n, err := m.vol.Tree.Lookup(p)
	if err != nil {
		return nil, m.errno("lookup", p, err)
	}
	ino := m.ino(p, n)
	m.fillAttr(n, ino, &out.Attr)
	return d.NewInode(ctx, m.newNode(p, n), gofs.StableAttr{Mode: out.Attr.Mode & syscall.S_IFMT, Ino: ino}), 0
}

func (d *dirNode) Readdir(ctx context.Context) (_ gofs.DirStream, errno syscall.Errno) {
	m := d.mount
	defer m.timer()("readdir", &errno)
	m.counters.readdirs.Add(1)
	var entries []fuse.DirEntry
	err := m.vol.Tree.List(d.path, func(name string, n *tree.Node) bool {
		if d.path == "/" && name == StatsFileName {
			return true
		}
		var a fuse.Attr
		m.fillAttr(n, 0, &a)
		entries = append(entries, fuse.DirEntry{Name: name, Mode: a.Mode, Ino: m.ino(path.Join(d.path, name), n)})
		return true
	})
	if err != nil {
		return nil, m.errno("readdir", d.path, err)
	}
	return gofs.NewListDirStream(entries), 0
}

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

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	return 0
}
