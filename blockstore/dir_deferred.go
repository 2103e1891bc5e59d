package blockstore

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"blockfs/internal/fileutil"
)

// Flusher is implemented by stores that may hold writes back for speed:
// after Flush returns, every Put that returned before it is durable and
// visible to other processes. Callers that publish references to blocks
// (metadata) flush first. Callers find a Flusher with As: wrappers expose
// Unwrap.
type Flusher interface {
	Flush(ctx context.Context) error
}

var _ Flusher = (*DirStore)(nil)

// DeferSync switches the store to deferred durability, for bulk writers
// (imports). One fsync of file and directory per block caps a local import
// at a fraction of what the disk can write; instead, Put writes each block
// to a temp file without syncing, and Flush makes them all durable with one
// syncfs, renames them into place and syncs again. No name ever points at
// unsynced data, so a crash loses at most the unflushed blocks (left as
// stale temp files), never corrupts one. Until Flush, pending blocks are
// visible to this DirStore (Has, Get) but not to other processes or List.
// Call it before the store is shared between goroutines.
func (d *DirStore) DeferSync() {
	d.deferred = true
	d.pending = map[Hash]string{}
}

func (d *DirStore) putDeferred(h Hash, data []byte) error {
	if _, ok := d.pendingFile(h); ok {
		return nil
	}
	dir, err := d.tempDir()
	var tmp string
	if err == nil {
		tmp, err = fileutil.WriteTemp(dir, tempPrefix, 0o444, false, data)
	}
	if err != nil {
		return fmt.Errorf("blockstore: put %v: %w", h, err)
	}
	d.pmu.Lock()
	defer d.pmu.Unlock()
	if _, ok := d.pending[h]; ok {
		os.Remove(tmp) // another goroutine wrote it meanwhile
		return nil
	}
	d.pending[h] = tmp
	return nil
}

func (d *DirStore) pendingFile(h Hash) (string, bool) {
	if !d.deferred {
		return "", false
	}
	d.pmu.Lock()
	defer d.pmu.Unlock()
	tmp, ok := d.pending[h]
	return tmp, ok
}

func (d *DirStore) dropPending(h Hash) bool {
	if !d.deferred {
		return false
	}
	d.pmu.Lock()
	tmp, ok := d.pending[h]
	delete(d.pending, h)
	d.pmu.Unlock()
	if ok {
		os.Remove(tmp)
	}
	return ok
}

// Flush implements Flusher: sync the pending blocks' data, rename them into
// place, sync the names. Without DeferSync it has nothing to do.
func (d *DirStore) Flush(ctx context.Context) error {
	if !d.deferred {
		return nil
	}
	d.pmu.Lock()
	batch := d.pending
	d.pending = map[Hash]string{}
	d.pmu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	// On failure, what was not renamed yet stays pending for the next Flush.
	restore := func() {
		d.pmu.Lock()
		defer d.pmu.Unlock()
		for h, tmp := range batch {
			if _, done := d.pending[h]; !done {
				d.pending[h] = tmp
			}
		}
	}
	if err := d.syncfs(); err != nil {
		restore()
		return fmt.Errorf("blockstore: flush: %w", err)
	}
	for h, tmp := range batch {
		if err := ctx.Err(); err != nil {
			restore()
			return err
		}
		if err := os.MkdirAll(d.dir(h), 0o755); err != nil {
			restore()
			return fmt.Errorf("blockstore: flush %v: %w", h, err)
		}
		if err := os.Rename(tmp, d.path(h)); err != nil {
			restore()
			return fmt.Errorf("blockstore: flush %v: %w", h, err)
		}
		delete(batch, h)
	}
	if err := d.syncfs(); err != nil {
		return fmt.Errorf("blockstore: flush: %w", err)
	}
	return nil
}

// syncfs flushes the filesystem holding the store: one call instead of an
// fsync per file and directory.
func (d *DirStore) syncfs() error {
	f, err := os.Open(d.root)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
