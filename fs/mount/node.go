package mount

import (
	"errors"
	"fmt"
	"syscall"

	"blockfs/fs/tree"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// errno maps tree errors to what the kernel should see, counting the bad
// ones. A node that cannot be decoded is EIO for its path alone, and
// logged once, however often it is asked for.
func (m *Mount) errno(op, p string, err error) syscall.Errno {
	if errors.Is(err, tree.ErrNotExist) {
		return syscall.ENOENT
	}
	m.counters.errors.Add(1)
	if errors.Is(err, tree.ErrBadNode) {
		m.badEntry(p, fmt.Sprintf("%s %s: %v", op, p, err))
		return syscall.EIO
	}
	m.opts.Logger.Error(op+" failed", "path", p, "err", err)
	return syscall.EIO
}

// badEntry counts a directory entry that cannot be served and logs it the
// first time it is met (key names it). Past maxLoggedBad distinct entries
// the rest are counted only, so a hostile store cannot grow the set
// without bound.
func (m *Mount) badEntry(key, msg string) {
	m.badMu.Lock()
	_, seen := m.badSeen[key]
	full := len(m.badSeen) >= maxLoggedBad
	if !seen && !full {
		m.badSeen[key] = struct{}{}
	}
	m.badMu.Unlock()
	if seen {
		return
	}
	m.counters.badEntries.Add(1)
	switch {
	case !full:
		m.opts.Logger.Error("bad directory entry skipped", "entry", key, "err", msg)
	case m.counters.badEntries.Load() == maxLoggedBad+1:
		m.opts.Logger.Warn("more bad directory entries; counted in stats (bad_entries), not logged")
	}
}

const maxLoggedBad = 10000

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
