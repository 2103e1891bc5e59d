package fs

import (
	"context"
	"encoding/json"
	"errors"
	"path"
	"syscall"

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

// errno maps tree errors to what the kernel should see, counting the bad ones.
func (m *Mount) errno(op, p string, err error) syscall.Errno {
	if errors.Is(err, ErrNotExist) {
		return syscall.ENOENT
	}
	m.counters.errors.Add(1)
	m.opts.Logger.Printf("%s %s: %v", op, p, err)
	return syscall.EIO
}

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

// newNode makes the go-fuse node for a tree node.
func (m *Mount) newNode(p string, n *Node) gofs.InodeEmbedder {
	switch n.Kind {
	case KindDir:
		return &dirNode{mount: m, path: p}
	case KindSymlink:
		return &symlinkNode{mount: m, node: n}
	default:
		return &fileNode{mount: m, path: p, node: n}
	}
}

func (d *dirNode) Readdir(ctx context.Context) (_ gofs.DirStream, errno syscall.Errno) {
	m := d.mount
	defer m.timer()("readdir", &errno)
	m.counters.readdirs.Add(1)
	var entries []fuse.DirEntry
	err := m.vol.Tree.List(d.path, func(name string, n *Node) bool {
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

// Extended attributes are not stored: say "no such attribute" rather than
// "not supported", which tools such as ls and cp handle quietly.
func (d *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}

func (d *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return 0, 0
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	return 0
}

// fillAttr turns a tree node into kernel attributes. Owner is the mounting
// user: blockfs does not store owners, since compute nodes map users anyway.
func (m *Mount) fillAttr(n *Node, ino uint64, a *fuse.Attr) {
	a.Ino = ino
	a.Size = uint64(n.Size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = maxRead // st_blksize: tools size their reads by it
	a.Nlink = 1
	switch n.Kind {
	case KindDir:
		a.Mode = syscall.S_IFDIR | n.Mode
		a.Nlink = 2
	case KindSymlink:
		a.Mode = syscall.S_IFLNK | n.Mode
	default:
		a.Mode = syscall.S_IFREG | n.Mode
	}
	sec, nsec := n.MtimeNs/1e9, n.MtimeNs%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	a.Mtime, a.Mtimensec = uint64(sec), uint32(nsec)
	a.Ctime, a.Ctimensec = a.Mtime, a.Mtimensec
	a.Atime, a.Atimensec = a.Mtime, a.Mtimensec
	a.Uid, a.Gid = uint32(syscall.Getuid()), uint32(syscall.Getgid())
}

// symlinkNode is a symbolic link.
type symlinkNode struct {
	gofs.Inode
	mount *Mount
	node  *Node
}

var _ gofs.NodeReadlinker = (*symlinkNode)(nil)

func (s *symlinkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	s.mount.counters.readlinks.Add(1)
	return []byte(s.node.Target), 0
}

func (s *symlinkNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	s.mount.counters.getattrs.Add(1)
	s.mount.fillAttr(s.node, s.StableAttr().Ino, &out.Attr)
	return 0
}

// statsNode is the hidden stats file. Each open snapshots the counters; the
// file is direct-I/O so the kernel never serves a stale copy.
type statsNode struct {
	gofs.Inode
	mount *Mount
}

type statsHandle struct{ data []byte }

func (s *statsNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Attr.Mode = syscall.S_IFREG | 0o444
	out.Attr.Ino = s.StableAttr().Ino
	if h, ok := f.(*statsHandle); ok {
		out.Attr.Size = uint64(len(h.data))
	}
	out.SetTimeout(0)
	return 0
}

func (s *statsNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	data, err := json.MarshalIndent(s.mount.Stats(), "", "  ")
	if err != nil {
		return nil, 0, syscall.EIO
	}
	return &statsHandle{data: append(data, '\n')}, fuse.FOPEN_DIRECT_IO, 0
}

func (s *statsNode) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h := f.(*statsHandle)
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(h.data[off:min(int64(len(h.data)), off+int64(len(dest)))]), 0
}
