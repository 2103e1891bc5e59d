package mount

import (
	"errors"
	"syscall"

	"blockfs/fs/tree"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// errno maps tree errors to what the kernel should see, counting the bad ones.
func (m *Mount) errno(op, p string, err error) syscall.Errno {
	if errors.Is(err, tree.ErrNotExist) {
		return syscall.ENOENT
	}
	m.counters.errors.Add(1)
	m.opts.Logger.Printf("%s %s: %v", op, p, err)
	return syscall.EIO
}

// newNode makes the go-fuse node for a tree node.
func (m *Mount) newNode(p string, n *tree.Node) gofs.InodeEmbedder {
	switch n.Kind {
	case tree.KindDir:
		return &dirNode{mount: m, path: p}
	case tree.KindSymlink:
		return &symlinkNode{mount: m, node: n}
	default:
		return &fileNode{mount: m, path: p, node: n}
	}
}

// fillAttr turns a tree node into kernel attributes (owners, overrides,
// links and holes: fillOwnerAttr in attr.go).
func (m *Mount) fillAttr(n *tree.Node, ino uint64, a *fuse.Attr) {
	a.Ino = ino
	a.Size = uint64(n.Size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = maxRead // st_blksize: tools size their reads by it
	a.Nlink = 1
	switch n.Kind {
	case tree.KindDir:
		a.Mode = syscall.S_IFDIR | n.Mode
		a.Nlink = 2
	case tree.KindSymlink:
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
	m.fillOwnerAttr(n, a)
}
