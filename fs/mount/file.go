package mount

import (
	"context"
	"errors"
	"sync"
	"syscall"

	"blockfs/blockstore"
	"blockfs/fs/tree"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fileNode is a regular file: a list of blocks.
type fileNode struct {
	gofs.Inode
	mount *Mount
	path  string
	node  *tree.Node
}

var (
	_ gofs.NodeOpener      = (*fileNode)(nil)
	_ gofs.NodeGetattrer   = (*fileNode)(nil)
	_ gofs.NodeGetxattrer  = (*fileNode)(nil)
	_ gofs.NodeListxattrer = (*fileNode)(nil)
)

func (f *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.mount.counters.getattrs.Add(1)
	f.mount.fillAttr(f.node, f.StableAttr().Ino, &out.Attr)
	return 0
}

func (f *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return f.mount.getxattr(f.node, attr, dest)
}

func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(f.node, dest)
}

// Open hands out a handle bound to the node as it is now, so that a file
// keeps reading the version it opened. The data never changes under a
// given block list, so the kernel may keep its page cache across opens.
func (f *fileNode) Open(ctx context.Context, flags uint32) (_ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer f.mount.timer()("open", &errno)
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	f.mount.counters.opens.Add(1)
	return newFileHandle(f.mount, f.path, f.node), fuse.FOPEN_KEEP_CACHE, 0
}

// fileHandle is one open file: reads through the pool, and the readahead
// of its reader.
type fileHandle struct {
	mount *Mount
	path  string
	node  *tree.Node
	ra    readahead
}

func newFileHandle(m *Mount, p string, n *tree.Node) *fileHandle {
	h := &fileHandle{mount: m, path: p, node: n}
	h.ra.init(m, n)
	return h
}

var (
	_ gofs.FileReader   = (*fileHandle)(nil)
	_ gofs.FileReleaser = (*fileHandle)(nil)
)

// Read serves one kernel read through the pool. The bytes go to the kernel
// straight from the pool's buffers in one writev, which are released once
// the kernel has them. A 1 MiB read over ~1 MiB blocks usually spans two
// blocks; only the first is waited for memory (see Pool.TryGet). If a
// later one would have to wait, the read copies its blocks one at a time,
// holding one buffer at a time, instead.
func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	m := h.mount
	defer m.timer()("read", &errno)
	n := h.node
	m.counters.reads.Add(1)
	if off >= n.Size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(n.Size, off+int64(len(dest)))
	first, start, _ := n.Block(off)
	h.ra.observe(off, end)

	res := &poolResult{}
	for i, pos := first, start; pos < end; i++ {
		loc := n.Blocks[i]
		if tree.IsHole(loc) { // zeros, never fetched
			res.data = append(res.data, zeroBuf[:min(end, pos+loc.Size)-max(off, pos)])
			pos += loc.Size
			continue
		}
		get := m.pool.TryGet
		if len(res.bufs) == 0 {
			get = m.pool.Get
		}
		buf, err := get(ctx, loc)
		if errors.Is(err, blockstore.ErrWouldWait) {
			res.Done()
			m.counters.copiedReads.Add(1)
			return h.copyRead(ctx, dest, off, end)
		}
		if err != nil {
			res.Done()
			return nil, h.fail(off, loc, err)
		}
		res.bufs = append(res.bufs, buf)
		res.data = append(res.data, buf.Bytes()[max(off, pos)-pos:min(end, pos+loc.Size)-pos])
		pos += loc.Size
	}
	m.counters.readBytes.Add(end - off)
	return res, 0
}

// copyRead serves [off, end) by copying block after block into dest,
// holding one buffer at a time.
func (h *fileHandle) copyRead(ctx context.Context, dest []byte, off, end int64) (fuse.ReadResult, syscall.Errno) {
	n := h.node
	first, start, _ := n.Block(off)
	done := 0
	for i, pos := first, start; pos < end; i++ {
		loc := n.Blocks[i]
		if tree.IsHole(loc) {
			k := int(min(end, pos+loc.Size) - max(off, pos))
			clear(dest[done : done+k])
			done += k
			pos += loc.Size
			continue
		}
		buf, err := h.mount.pool.Get(ctx, loc)
		if err != nil {
			return nil, h.fail(off, loc, err)
		}
		done += copy(dest[done:], buf.Bytes()[max(off, pos)-pos:min(end, pos+loc.Size)-pos])
		buf.Release()
		pos += loc.Size
	}
	h.mount.counters.readBytes.Add(int64(done))
	return fuse.ReadResultData(dest[:done]), 0
}

// fail turns a block that could not be had into EIO for this read alone.
func (h *fileHandle) fail(off int64, loc blockstore.Locator, err error) syscall.Errno {
	if errors.Is(err, context.Canceled) {
		return syscall.EINTR // the reader was interrupted; nothing is wrong
	}
	h.mount.counters.errors.Add(1)
	h.mount.opts.Logger.Printf("read %s at %d: block %s: %v", h.path, off, loc, err)
	return syscall.EIO
}

// Release ends the handle's readahead; prefetches in flight finish on their
// own.
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.ra.stop()
	return 0
}

// poolResult hands pool buffers to go-fuse and releases them once the
// kernel has the bytes. Slices makes go-fuse write them with one writev(2)
// straight from the buffers (no copy, no splice attempt).
type poolResult struct {
	bufs []*blockstore.Buffer
	data [][]byte // the read's part of each buffer
	once sync.Once
}

func (r *poolResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	if len(r.data) == 1 {
		return r.data[0], fuse.OK
	}
	buf = buf[:0]
	for _, d := range r.data {
		buf = append(buf, d...)
	}
	return buf, fuse.OK
}

func (r *poolResult) Size() int {
	n := 0
	for _, d := range r.data {
		n += len(d)
	}
	return n
}

func (r *poolResult) Slices() ([][]byte, fuse.Status) { return r.data, fuse.OK }

func (r *poolResult) Done() {
	r.once.Do(func() {
		for _, b := range r.bufs {
			b.Release()
		}
	})
}
