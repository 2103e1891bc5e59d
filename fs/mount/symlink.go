package mount

import (
	"syscall"

	"blockfs/fs/tree"
)

// readlink answers READLINK from the tree, read again: the kernel caches
// a link's target with its inode, so it asks once per inode it holds.
func (fs *rawFS) readlink(nodeid uint64) ([]byte, syscall.Errno) {
	v, _, n, _, errno := fs.node("readlink", nodeid)
	if errno != 0 {
		return nil, errno
	}
	if n.Kind != tree.KindSymlink {
		return nil, syscall.EINVAL
	}
	v.counters.readlinks.Add(1)
	return []byte(n.Target), 0
}
