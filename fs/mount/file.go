package mount

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/tree"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// open hands out a handle bound to the file as it is now, so that it
// keeps reading the version it opened whatever refreshes do. The data
// never changes under a given nodeid (a new version is a new identity), so
// the kernel may keep its page cache across opens.
func (fs *rawFS) open(nodeid uint64, flags uint32, out *fuse.OpenOut) (errno syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return syscall.EROFS
	}
	// The generation before the node is read: the node is of it or a
	// later one, which a handle's gc lease then keeps (OldestServed).
	gen := fs.m.generation()
	v, p, n, id, errno := fs.node("open", nodeid)
	if errno != 0 {
		return errno
	}
	defer v.timer()("open", &errno)
	if n.Kind != tree.KindFile {
		return syscall.EISDIR
	}
	v.counters.opens.Add(1)
	v.traceOpen(p, n)
	v.prefetchForOpen(p, n)
	v.place(n)
	h := newFileHandle(v, p, n)
	h.ino = id.ino
	h.gen, h.held = gen, true
	if v != fs.m {
		h.gen = v.generation() // a snapshot view's, which never changes
	}
	v.holdGeneration(h.gen)
	out.Fh = fs.m.handles.add(h)
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	return 0
}

// fileHandle is one open file: reads through the pool, and the readahead
// of its reader.
type fileHandle struct {
	mount *Mount
	path  string
	node  *tree.Node
	ra    readahead
	ino   uint64 // its st_ino, for a GETATTR through the handle
	gen   uint64 // the generation its node was read at
	held  bool   // counted in the mount's open generations (opened by the kernel)

	failMu   sync.Mutex
	failed   blockstore.Locator // the block this handle's last failed read needed
	failedAt time.Time
}

func newFileHandle(m *Mount, p string, n *tree.Node) *fileHandle {
	h := &fileHandle{mount: m, path: p, node: n}
	h.ra.init(m, n)
	return h
}

// failMemo is how long a handle remembers the block whose fetch just failed
// its read. When a readahead request fails, the kernel asks again at once for
// the page the reader wants (one read(2), two FUSE reads); without the memo
// that second request starts a fresh fetch, and a hung store makes one
// read(2) take two fetch timeouts.
const failMemo = time.Second

// Read serves one kernel read through the pool. The bytes go to the kernel
// straight from the pool's buffers in one writev, which are released once
// the kernel has them. A 1 MiB read over ~1 MiB blocks usually spans two
// blocks; only the first is waited for memory (see Pool.TryGet). If a
// later one would have to wait, the read copies its blocks one at a time,
// holding one buffer at a time, instead.
//
// The whole read, fallback included, is bounded by one fetch timeout (see
// readContext), and the other blocks it spans are fetched alongside the
// first rather than after it.
func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	m := h.mount
	defer m.timer()("read", &errno)
	defer m.counters.readLatency.Since(time.Now())
	n := h.node
	m.counters.reads.Add(1)
	if off >= n.Size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(n.Size, off+int64(len(dest)))
	first, start, _ := n.Block(off)
	m.traceRead(n, off, end)
	h.ra.observe(off, end)
	rctx, cancel := m.readContext(ctx)
	defer cancel()
	h.fetchAlongside(first, start, end)

	res := &poolResult{}
	for i, pos := first, start; pos < end; i++ {
		// The file's bytes of block i are [boff, boff+ln) of the block: all
		// of it, or a packed file's range (the pool holds the whole pack, so
		// the other files of the pack are hits).
		loc, boff, ln := n.Blocks[i], n.Off(i), n.Len(i)
		if tree.IsHole(loc) { // zeros, never fetched
			res.data = append(res.data, zeroBuf[:min(end, pos+ln)-max(off, pos)])
			pos += ln
			continue
		}
		get := m.pool.TryGet
		if len(res.bufs) == 0 {
			get = m.pool.Get
		}
		buf, err := h.get(rctx, get, loc)
		if errors.Is(err, blockstore.ErrWouldWait) {
			res.Done()
			m.counters.copiedReads.Add(1)
			return h.copyRead(ctx, rctx, dest, off, end)
		}
		if err != nil {
			res.Done()
			return nil, h.fail(ctx, off, loc, err)
		}
		res.bufs = append(res.bufs, buf)
		res.data = append(res.data, buf.Bytes()[boff+max(off, pos)-pos:boff+min(end, pos+ln)-pos])
		pos += ln
	}
	m.counters.readBytes.Add(end - off)
	return res, 0
}

// readContext is what a kernel read waits for its blocks under. It ignores
// the request's cancellation: the kernel interrupts a FUSE read whenever the
// reader gets a signal, even one it handles and restarts from (SA_RESTART),
// and read(2) on a regular file failing with EINTR breaks programs that never
// see that from a local disk. The fetch runs on the pool's own context
// anyway; the read waits for it, up to one fetch timeout for the whole read.
// A reader killed meanwhile (a fatal signal, which the kernel also sends as
// an interrupt) is let go at once: the kernel waits for our answer before
// the process can exit, and it will never see the EINTR. With no fetch
// timeout the interrupt is the only way out of a hung store, so it is
// honoured.
func (m *Mount) readContext(ctx context.Context) (context.Context, context.CancelFunc) {
	var rctx context.Context
	var cancel context.CancelFunc
	if m.opts.FetchTimeout <= 0 {
		rctx, cancel = context.WithCancel(ctx)
	} else {
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), m.opts.FetchTimeout)
	}
	stop := context.AfterFunc(ctx, func() {
		m.counters.interrupts.Add(1)
		if c, ok := ctx.(*fuse.Context); ok && dying(c.Caller.Pid) {
			m.counters.killedReads.Add(1)
			cancel()
		}
	})
	return rctx, func() { stop(); cancel() }
}

// fetchAlongside starts fetching the blocks after the first that [off, end)
// spans, so that a read of two slow blocks waits for one fetch time, not
// two. Only when they fit easily in the pool: in a pool too small for them
// all, the read copies block by block and an early fetch would be evicted
// before it is used.
func (h *fileHandle) fetchAlongside(first int, start, end int64) {
	n, m := h.node, h.mount
	last, _, _ := n.Block(end - 1)
	if last == first || n.Start(last)+n.Len(last)-start > m.opts.PoolSize/4 {
		return
	}
	for i := first + 1; i <= last; i++ {
		if tree.IsHole(n.Blocks[i]) {
			continue // zeros, never fetched
		}
		m.pool.Prefetch(n.Blocks[i])
	}
}

// get is Get or TryGet of loc, unless loc failed this handle's read just now.
func (h *fileHandle) get(ctx context.Context, get func(context.Context, blockstore.Locator) (*blockstore.Buffer, error), loc blockstore.Locator) (*blockstore.Buffer, error) {
	h.failMu.Lock()
	recent := h.failed == loc && time.Since(h.failedAt) < failMemo
	h.failMu.Unlock()
	if recent {
		return nil, errFailedRecently
	}
	return get(ctx, loc)
}

// errFailedRecently is the error of a read of a block that failed the
// handle's previous read less than failMemo ago.
var errFailedRecently = errors.New("failed a moment ago")

// copyRead serves [off, end) by copying block after block into dest,
// holding one buffer at a time.
func (h *fileHandle) copyRead(ctx, rctx context.Context, dest []byte, off, end int64) (fuse.ReadResult, syscall.Errno) {
	n := h.node
	first, start, _ := n.Block(off)
	done := 0
	for i, pos := first, start; pos < end; i++ {
		loc, boff, ln := n.Blocks[i], n.Off(i), n.Len(i)
		if tree.IsHole(loc) {
			k := int(min(end, pos+ln) - max(off, pos))
			clear(dest[done : done+k])
			done += k
			pos += ln
			continue
		}
		buf, err := h.get(rctx, h.mount.pool.Get, loc)
		if err != nil {
			return nil, h.fail(ctx, off, loc, err)
		}
		c, err := copyMapped(dest[done:], buf.Bytes()[boff+max(off, pos)-pos:boff+min(end, pos+ln)-pos])
		buf.Release()
		if err != nil {
			return nil, h.fail(ctx, off, loc, err)
		}
		done += c
		pos += ln
	}
	h.mount.counters.readBytes.Add(int64(done))
	return fuse.ReadResultData(dest[:done]), 0
}

// copyMapped copies src, which may be a mapping of a block file, into dst.
// A file truncated under its mapping turns the copy into a SIGBUS, which
// would kill the mount; with panic-on-fault it becomes this read's error.
func copyMapped(dst, src []byte) (n int, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(interface{ Addr() uintptr }); ok { // a memory fault, see debug.SetPanicOnFault
				n, err = 0, fmt.Errorf("%w: block memory unreadable at %#x (file truncated under its mapping?)", blockstore.ErrCorrupt, f.Addr())
				return
			}
			panic(r)
		}
	}()
	return copy(dst, src), nil
}

// fail turns a block that could not be had into EIO for this read alone,
// remembered for failMemo. The request's own cancellation (only honoured
// without a fetch timeout) is EINTR: nothing is wrong with the block.
func (h *fileHandle) fail(ctx context.Context, off int64, loc blockstore.Locator, err error) syscall.Errno {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	h.mount.counters.errors.Add(1)
	if !errors.Is(err, errFailedRecently) {
		h.failMu.Lock()
		h.failed, h.failedAt = loc, time.Now()
		h.failMu.Unlock()
	}
	// Every failure is logged under its block, so that the logger folds
	// repeats into one line with a count that adds up to the errors.
	h.mount.opts.Logger.Error("read failed", "path", h.path, "off", off, "block", loc.String(), "err", err)
	return syscall.EIO
}

// Release ends the handle's readahead (prefetches in flight finish on their
// own) and lets its generation go from the mount's gc lease.
func (h *fileHandle) Release() {
	h.ra.stop()
	if h.held {
		h.mount.dropGeneration(h.gen)
	}
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

// place tells a read tier that spreads blocks (blockstore.Placer) the
// blocks of a file being opened, so that its readers draw on every
// member's link evenly. Packs are left out: a pack is shared by the files
// of a directory, and its placement is its owner's.
func (m *Mount) place(n *tree.Node) {
	if len(n.Blocks) < 2 || n.Packed() {
		return
	}
	if p, ok := blockstore.As[blockstore.Placer](m.vol.Store().Blocks); ok {
		p.Place(n.Blocks)
	}
}
