package mount

import (
	"context"
	"encoding/json"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

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
