package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/tree"
)

// ErrChanged is wrapped when a source file changes while it is imported
// (its size, mtime, ctime or inode differ before and after, or it shrank
// while it was read).
var ErrChanged = errors.New("file changed while it was imported")

// fileError is a problem of one source file (it cannot be opened or read):
// a Failure, not the end of the import.
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

// sourceFile is one source file being imported: its blocks are read,
// hashed and stored by the workers, and it is committed when the reader and
// every block are done.
type sourceFile struct {
	im     *Importer
	item   item
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
	file *sourceFile
	pack *pack
	idx  int
	data []byte
}

// finish records a stored block (or a failure) and commits the file when it
// was the last one.
func (f *sourceFile) finish(idx int, loc blockstore.Locator, err error, c *committer, changed *changedList) {
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

// chunkFile reads one file, cuts it into content-defined blocks (the
// streaming chunker draws Cut's boundaries, so they are the same as over
// the whole file) and queues each block, in a buffer of its own, for the
// workers; the workers commit the file when its last block is stored.
//
// The file is read, not mapped: a source that stalls (a hung network or
// FUSE filesystem) then blocks this goroutine in a read system call, where
// the Go runtime leaves it. A fault on a mapped page stalls the goroutine
// while it counts as running, so the next garbage collection, which waits
// for every running goroutine, would stop the whole import, its publishes
// included, until the source answered.
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
	im.files.Add(1)
	mf := &sourceFile{im: im, item: it, refs: 1, node: im.node(it, tree.KindFile)}
	if fi.Size() == 0 {
		mf.finish(-1, blockstore.Locator{}, nil, c, changed)
		return nil
	}
	defer func() {
		// The reader's own reference; a short read below marks the file changed.
		mf.finish(-1, blockstore.Locator{}, err, c, changed)
		if errors.Is(err, ErrChanged) {
			err = nil // finish has queued it for a second reading
		}
	}()
	return im.queueBlocks(ctx, mf, f, fi.Size(), jobs, c, changed)
}

// queueBlocks cuts the size bytes the file held when opened into blocks
// and queues them. A file that turns out shorter changed while it was read
// (ErrChanged); one that changed otherwise is caught by finish (unchanged).
func (im *Importer) queueBlocks(ctx context.Context, mf *sourceFile, f *os.File, size int64, jobs chan<- blockJob, c *committer, changed *changedList) error {
	src := mf.item.src
	ch, err := chunker.New(io.LimitReader(f, size), im.opts.Chunking)
	if err != nil {
		return err
	}
	var read int64
	for {
		chunk, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fileError{fmt.Errorf("reading: %w", unwrapPath(err))}
		}
		data := bytes.Clone(chunk) // the chunker reuses its buffer
		read += int64(len(data))
		mf.mu.Lock()
		mf.blocks = append(mf.blocks, blockstore.Locator{})
		idx := len(mf.blocks) - 1
		mf.refs++
		mf.mu.Unlock()
		im.bytes.Add(int64(len(data)))
		select {
		case jobs <- blockJob{file: mf, idx: idx, data: data}:
		case <-ctx.Done():
			mf.finish(idx, blockstore.Locator{}, context.Cause(ctx), c, changed)
			return context.Cause(ctx)
		}
	}
	if read != size {
		return fmt.Errorf("import: %s: %w (read %d of its %d bytes)", src, ErrChanged, read, size)
	}
	return nil
}
