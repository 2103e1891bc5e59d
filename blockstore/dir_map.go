package blockstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
)

var _ Mapper = (*DirStore)(nil)

// Map implements Mapper: the block file is mapped shared and read-only,
// and locked in memory.
func (d *DirStore) Map(ctx context.Context, loc Locator) ([]byte, func() error, error) {
	if d.noMap.Load() {
		return nil, nil, fmt.Errorf("blockstore: map %v: %w (mlock failed earlier)", loc, errNoMap)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := loc.validate(); err != nil {
		return nil, nil, err
	}
	if loc.Size == 0 {
		return nil, nil, fmt.Errorf("blockstore: map %v: %w (empty block)", loc, errNoMap)
	}
	f, err := os.Open(d.path(loc.Hash))
	if tmp, ok := d.pendingFile(loc.Hash); ok && errors.Is(err, fs.ErrNotExist) {
		f, err = os.Open(tmp)
	}
	if err != nil {
		return nil, nil, d.wrapMissing("map", loc.Hash, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("blockstore: map %v: %w", loc, err)
	}
	if fi.Size() != loc.Size {
		return nil, nil, fmt.Errorf("%w: map %v: file has %d bytes", ErrCorrupt, loc, fi.Size())
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(loc.Size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("blockstore: map %v: %w: %w", loc, errNoMap, err)
	}
	// mlock also faults the pages in, from the page cache when they are
	// there, so the hash that follows does not take a fault per page.
	if err := syscall.Mlock(data); err != nil {
		syscall.Munmap(data)
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOMEM) {
			d.noMap.Store(true)
		}
		return nil, nil, fmt.Errorf("blockstore: map %v: locking: %w: %w", loc, errNoMap, err)
	}
	// Once: a second munmap could hit whatever was mapped there since.
	unmap := sync.OnceValue(func() error { return syscall.Munmap(data) })
	return data[:loc.Size:loc.Size], unmap, nil
}
