package importer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/tree"
)

// ErrChanged is wrapped when a source file shrinks while it is imported.
var ErrChanged = errors.New("file changed during import")

// mappedFile is one source file mapped into memory. Blocks are cut, hashed
// and written straight from the page cache, with no copy into our own
// buffers. It is unmapped when the reader and every block are done.
type mappedFile struct {
	item   item
	data   []byte
	mu     sync.Mutex
	blocks []blockstore.Locator
	node   *tree.Node // owners, mode, xattrs; blocks are set when all are stored
	refs   int        // the reader plus blocks not yet finished
	failed bool       // a block failed: the file is not committed
}

// blockJob is one block for the workers.
type blockJob struct {
	file *mappedFile
	idx  int
	data []byte
}

// finish records a stored block (or a failure) and commits the file when it
// was the last one.
func (f *mappedFile) finish(idx int, loc blockstore.Locator, ok bool, c *committer) {
	f.mu.Lock()
	if idx >= 0 {
		f.blocks[idx] = loc
	}
	f.failed = f.failed || !ok
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
	if !f.failed {
		n := f.node
		n.SetBlocks(f.blocks)
		c.add(tree.Entry(f.item.dest, n))
	}
}

// chunkFile maps one file, cuts it into content-defined blocks and queues
// them for the workers; the workers commit the file when its last block is
// stored.
func (im *Importer) chunkFile(ctx context.Context, it item, jobs chan<- blockJob, c *committer) (err error) {
	f, err := os.Open(it.src)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	im.files.Add(1)
	mf := &mappedFile{item: it, refs: 1, node: im.node(it, tree.KindFile)}
	if fi.Size() == 0 {
		mf.finish(-1, blockstore.Locator{}, true, c)
		return nil
	}
	if fi.Size() > int64(^uint(0)>>1) {
		return fmt.Errorf("import: %s: too large to map", it.src)
	}
	mf.data, err = syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("import: mapping %s: %w", it.src, err)
	}
	_ = syscall.Madvise(mf.data, syscall.MADV_SEQUENTIAL|syscall.MADV_WILLNEED)

	defer func() {
		// The reader's own reference; a fault below marks the file failed.
		mf.finish(-1, blockstore.Locator{}, err == nil, c)
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
			mf.finish(idx, blockstore.Locator{}, false, c)
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
