package mount

import (
	"context"
	"syscall"

	"blockfs/fs/tree"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// symlinkNode is a symbolic link.
type symlinkNode struct {
	gofs.Inode
	mount *Mount
	node  *tree.Node
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
