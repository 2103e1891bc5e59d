package importer

import (
	"context"
	"sync"

	"blockfs/blockstore"
	"blockfs/fs/tree"
)

// Reading small files ahead of the walk. A tree of tens of thousands of
// small files is, per file, an open, a stat, a read, an lstat, a listxattr
// and a hash: done one after another by the goroutine that packs them, that
// sequence, not the store, bounds the import. Several readers therefore
// do it for the files the walk will reach next, while the packing goroutine
// still takes the results in walk order, so packs hold the same files in
// the same order as before (which keeps them identical across re-imports
// of the same tree, and a directory's files together).

// readAheadFiles bounds how many small files are read ahead of the packer;
// each is below Options.PackBelow, so the memory held is bounded too.
const readAheadFiles = 256

// smallRead is one small file read ahead: its bytes, what was opened, its
// node (without blocks) and its content hash, or why it could not be read.
type smallRead struct {
	it   item
	data []byte
	node *tree.Node
	err  error
	done chan struct{}
}

// readAhead reads the packable items among items with readers goroutines,
// at most readAheadFiles ahead of the consumer. take(i) returns the read of
// items[i] (nil for an item that is not packable) once it is done; the
// consumer must call take for every index in order, or stop.
type readAhead struct {
	reads []*smallRead
	slots chan struct{} // one per read started and not yet taken
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

func (im *Importer) readAhead(ctx context.Context, items []item, readers int) *readAhead {
	ctx, stop := context.WithCancel(ctx)
	ra := &readAhead{reads: make([]*smallRead, len(items)), slots: make(chan struct{}, readAheadFiles), stop: stop}
	for i, it := range items {
		if im.packable(it) {
			ra.reads[i] = &smallRead{it: it, done: make(chan struct{})}
		}
	}
	queue := make(chan *smallRead, readers)
	ra.wg.Add(1 + readers)
	go func() { // hands the reads out in walk order, within the window
		defer ra.wg.Done()
		defer close(queue)
		for _, r := range ra.reads {
			if r == nil {
				continue
			}
			select {
			case ra.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case queue <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range readers {
		go func() {
			defer ra.wg.Done()
			for r := range queue {
				im.readOne(r)
				close(r.done)
			}
		}()
	}
	return ra
}

// readOne reads a small file whole and makes its node and content hash.
func (im *Importer) readOne(r *smallRead) {
	data, fi, err := readSmall(r.it)
	if err != nil {
		r.err = err
		return
	}
	r.it.info = fi
	r.data = data
	r.node = im.node(r.it, tree.KindFile)
	if !allZero(data) {
		r.node.Sum = blockstore.Sum(data)
	}
}

// take waits for the read of items[i] (nil if it is not packable) and
// frees its place in the window. ok is false when ctx ended first.
func (ra *readAhead) take(ctx context.Context, i int) (r *smallRead, ok bool) {
	r = ra.reads[i]
	if r == nil {
		return nil, true
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, false
	}
	ra.reads[i] = nil // the packer keeps what it needs
	<-ra.slots
	return r, true
}

// close stops the readers and waits for them.
func (ra *readAhead) close() {
	ra.stop()
	ra.wg.Wait()
}

// readersFor is how many goroutines read small files ahead: reading is
// mostly system calls, which block a thread each, so a few per core.
func readersFor(workers int) int {
	return max(2, min(workers, 8))
}
