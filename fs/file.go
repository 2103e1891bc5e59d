package fs

import (
	"context"
	"errors"
	"sync"
	"syscall"

	"blockfs/blockstore"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fileNode is a regular file: a list of blocks.
type fileNode struct {
	gofs.Inode
	mount *Mount
	path  string
	node  *Node
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
	return 0, syscall.ENODATA
}

func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return 0, 0
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
	h := &fileHandle{mount: f.mount, path: f.path, node: f.node}
	h.done = h.prefetchDone
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// fileHandle is one open file. It remembers where the last read ended to
// tell a sequential reader (worth reading ahead for) from a random one, and
// keeps that reader's readahead going.
type fileHandle struct {
	mount *Mount
	path  string
	node  *Node
	done  func() // prefetchDone as a func value, made once

	mu         sync.Mutex
	runStart   int64 // where the current sequential run began
	next       int64 // where the run ends, i.e. where a sequential reader reads next
	reading    int   // the block holding the end of the latest read
	prefetched int   // blocks below this index have been prefetched
	inFlight   int   // prefetches this handle started that have not finished
	window     int   // how many may run at once: 0 unless the run is sequential
	released   bool
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
	h.readahead(off, end)

	res := &poolResult{}
	for i, pos := first, start; pos < end; i++ {
		loc := n.Blocks[i]
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

// readahead prefetches the blocks after [off, end) into the pool once the
// handle reads sequentially.
//
// A read continues a run if it starts near where the run ends (the kernel's
// parallel readahead requests arrive slightly out of order). Prefetching
// starts only once a run spans seqRun bytes: more than the kernel's own
// readahead around one random read, so random access prefetches nothing.
// A run from offset 0 is the exception: it gets a quarter of the window at
// once.
//
// The window is a number of fetches in flight, not a distance from the
// reader: each finished prefetch starts the next (see fill). Stores answer
// some requests much later than others (S3's long tail), and a reader
// waiting for one slow block must not leave the store idle meanwhile.
func (h *fileHandle) readahead(off, end int64) {
	m := h.mount
	if m.opts.Readahead < 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	started := h.next != 0 || off == 0
	if started && off >= h.next-seqBack && off <= h.next+seqAhead {
		h.runStart, h.next = min(h.runStart, off), max(h.next, end)
	} else {
		// A new run (a seek): what was prefetched for the old one says
		// nothing about this one.
		h.runStart, h.next, h.prefetched = off, end, 0
	}
	switch {
	case h.next-h.runStart >= seqRun:
		h.window = m.opts.Readahead
	case h.runStart == 0:
		// A run from the start of the file is most likely a whole-file
		// read (the kernel's own readahead bets the same), and waiting
		// for it to prove itself would cost a round trip to the store
		// with nothing in flight.
		h.window = max(1, m.opts.Readahead/4)
	default:
		h.window = 0
	}
	h.reading, _, _ = h.node.Block(end - 1)
	h.prefetched = max(h.prefetched, h.reading+1)
	h.fill()
}

// fill starts prefetches, in order after the reader's block, while fewer
// than window run, the next block is at most 2*window blocks ahead of the
// reader, and the bytes ahead of the reader stay within a quarter of the
// pool (so large blocks cannot overrun it). A block the pool cannot take
// now is tried again at the next read or finished prefetch. Called with
// h.mu held.
func (h *fileHandle) fill() {
	m, n := h.mount, h.node
	if h.released {
		return
	}
	readerEnd := n.starts[h.reading] + n.Blocks[h.reading].Size
	for h.inFlight < h.window && h.prefetched < len(n.Blocks) && h.prefetched-h.reading <= 2*h.window {
		loc := n.Blocks[h.prefetched]
		if n.starts[h.prefetched]+loc.Size-readerEnd > m.opts.PoolSize/4 {
			return
		}
		ok, started := m.pool.StartPrefetch(loc, h.done)
		if !ok {
			return
		}
		if started {
			h.inFlight++
		}
		m.counters.prefetches.Add(1)
		h.prefetched++
	}
}

// prefetchDone is called by the pool when a prefetch this handle started
// has finished: it makes room for the next.
func (h *fileHandle) prefetchDone() {
	h.mu.Lock()
	h.inFlight--
	h.fill()
	h.mu.Unlock()
}

// Release ends the handle's readahead; prefetches in flight finish on their
// own.
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	h.released = true
	h.mu.Unlock()
	return 0
}

// Bounds of a sequential run: how far out of order a read may land and still
// continue the run, and how long a run must be before we prefetch.
const (
	seqAhead = maxRead
	seqBack  = 2 * maxRead
	seqRun   = 2 * maxRead
)

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
