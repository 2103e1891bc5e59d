package importer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/tree"
)

// ErrChanged is wrapped when a source file changes while it is imported
// (its size, mtime, ctime or inode differ before and after, or it shrank
// under the mapping).
var ErrChanged = errors.New("file changed while it was imported")

// fileError is a problem of one source file (it cannot be opened, read or
// mapped): a Failure, not the end of the import.
type fileError struct{ err error }

func (e fileError) Error() string { return e.err.Error() }
func (e fileError) Unwrap() error { return e.err }

// changedList gathers the files of a pass that changed while read.
type changedList struct {
	mu    sync.Mutex
	items []item
}

func (l *changedList) add(it item) {
	l.mu.Lock()
	l.items = append(l.items, it)
	l.mu.Unlock()
}

// unchanged reports whether the file at p is still what was opened: a file
// whose size, mtime, ctime or inode moved while its blocks were read may be
// torn, and is not committed.
func unchanged(p string, before fs.FileInfo) bool {
	after, err := os.Lstat(p)
	if err != nil {
		return false
	}
	a, ok1 := before.Sys().(*syscall.Stat_t)
	b, ok2 := after.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return after.Size() == before.Size() && after.ModTime().Equal(before.ModTime())
	}
	return a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim && a.Ino == b.Ino && a.Dev == b.Dev
}

// mappedFile is one source file mapped into memory. Blocks are cut, hashed
// and written straight from the page cache, with no copy into our own
// buffers. It is unmapped when the reader and every block are done.
type mappedFile struct {
	im     *Importer
	item   item
	data   []byte
	mu     sync.Mutex
	blocks []blockstore.Locator
	node   *tree.Node // owners, mode, xattrs; blocks are set when all are stored
	refs   int        // the reader plus blocks not yet finished
	failed bool       // a block failed: the file is not committed
	// changed: the file changed under us, so it is read again.
	changed bool
}

// blockJob is one block for the workers: a block of a file, or a pack.
type blockJob struct {
	file *mappedFile
	pack *pack
	idx  int
	data []byte
}

// finish records a stored block (or a failure) and commits the file when it
// was the last one.
func (f *mappedFile) finish(idx int, loc blockstore.Locator, err error, c *committer, changed *changedList) {
	f.mu.Lock()
	if idx >= 0 {
		f.blocks[idx] = loc
	}
	f.failed = f.failed || err != nil
	f.changed = f.changed || errors.Is(err, ErrChanged)
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if !last {
		return
	}
	if f.data != nil {
		syscall.Munmap(f.data)
		f.data = nil
	}
	if !f.failed && !unchanged(f.item.src, f.item.info) {
		f.failed, f.changed = true, true
	}
	if f.changed {
		changed.add(f.item)
	}
	if !f.failed {
		n := f.node
		n.SetBlocks(f.blocks)
		f.im.committed.Add(1)
		f.im.committedBytes.Add(n.Size)
		c.add(tree.Entry(f.item.dest, n))
	}
}

// chunkFile maps one file, cuts it into content-defined blocks and queues
// them for the workers; the workers commit the file when its last block is
// stored.
func (im *Importer) chunkFile(ctx context.Context, it item, jobs chan<- blockJob, c *committer, changed *changedList) (err error) {
	f, err := os.Open(it.src)
	if err != nil {
		return fileError{unwrapPath(err)}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileError{unwrapPath(err)}
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: no longer a regular file", ErrChanged)
	}
	// The node is made from what was opened, and unchanged compares with it.
	it.info = fi
	if fi.Size() > int64(^uint(0)>>1) {
		return fileError{errors.New("too large to map")}
	}
	var data []byte
	if fi.Size() > 0 {
		data, err = syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return fileError{fmt.Errorf("mapping: %w", err)}
		}
	}
	im.files.Add(1)
	mf := &mappedFile{im: im, item: it, refs: 1, node: im.node(it, tree.KindFile), data: data}
	if fi.Size() == 0 {
		mf.finish(-1, blockstore.Locator{}, nil, c, changed)
		return nil
	}
	_ = syscall.Madvise(mf.data, syscall.MADV_SEQUENTIAL|syscall.MADV_WILLNEED)

	defer func() {
		// The reader's own reference; a fault below marks the file changed.
		mf.finish(-1, blockstore.Locator{}, err, c, changed)
		if errors.Is(err, ErrChanged) {
			err = nil // finish has queued it for a second reading
		}
	}()
	defer guardFault(it.src, &err)()
	cfg := im.opts.Chunking
	for data := mf.data; len(data) > 0; {
		n := chunker.Cut(data, cfg)
		mf.mu.Lock()
		mf.blocks = append(mf.blocks, blockstore.Locator{})
		idx := len(mf.blocks) - 1
		mf.refs++
		mf.mu.Unlock()
		im.bytes.Add(int64(n))
		select {
		case jobs <- blockJob{file: mf, idx: idx, data: data[:n]}:
		case <-ctx.Done():
			mf.finish(idx, blockstore.Locator{}, context.Cause(ctx), c, changed)
			return context.Cause(ctx)
		}
		data = data[n:]
	}
	return nil
}

// guardFault makes a fault on a mapped file (it was truncated under us:
// SIGBUS) an error for this import instead of a crash. Use as
// `defer guardFault(name, &err)()` in the goroutine touching the mapping.
func guardFault(name string, err *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok && isFault(re) {
				*err = fmt.Errorf("import: %s: %w (%v)", name, ErrChanged, re)
				return
			}
			panic(r)
		}
	}
}

// isFault tells a memory fault (which has an address) from other runtime errors.
func isFault(e runtime.Error) bool {
	_, ok := e.(interface{ Addr() uintptr })
	return ok
}
