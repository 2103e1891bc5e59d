package blockstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Mapper is implemented by stores that keep blocks in local files and can
// hand one out in place instead of copying it into a buffer.
//
// Why: for a local store, a cold pool fill used to cost as much as the
// SHA-256 that verifies it. Reading a block meant fresh anonymous memory
// (a page fault and a zeroed page per 4 KiB) plus a copy of bytes the
// kernel already holds in its page cache. A mapping shares those page-cache
// pages: no fault storm, no zeroing, no copy, and no second copy of the
// block in RAM.
//
// The mapping is locked in memory (mlock), so what the Pool verified is
// what it serves: a locked page cannot be evicted and read back from a disk
// that has meanwhile rotted. Blocks are never rewritten in place (writes go
// to a temp file and are renamed), so the bytes under a mapping only change
// if someone with write access to the store modifies a block file in
// place. Such a writer could equally publish new metadata: the store's
// writers are trusted, and verification guards against media, network and
// bugs.
//
// Callers find a Mapper with As. A wrapper that observes or changes reads
// (counting, timing, failing them) implements Map itself, forwarding to
// As[Mapper] of the store it wraps, so that mapped reads are not a way
// around it.
type Mapper interface {
	// Map returns block loc's bytes, mapped read-only and locked in memory,
	// and a function that unmaps them, safe to call more than once; the
	// bytes must not be touched after the first call. An error wrapping errors.ErrUnsupported means this
	// store cannot map (for now): the caller reads with Get instead. A
	// missing block wraps ErrNotFound and a wrong-sized one ErrCorrupt, as
	// with Get. Map need not verify the hash (the Pool does).
	Map(ctx context.Context, loc Locator) (data []byte, unmap func() error, err error)
}

// errNoMap is what a store returns from Map when it cannot map.
var errNoMap = errors.ErrUnsupported

// MapFile maps the first size bytes of f shared and read-only and locks
// them in memory, for a Mapper. The returned unmap is idempotent (a second
// munmap could hit whatever was mapped there since). Errors wrap
// errors.ErrUnsupported, so the caller's reader falls back to copying; if
// locking was refused for want of permission or RLIMIT_MEMLOCK, *disable is
// set so that the store stops trying (check it before calling).
func MapFile(f *os.File, size int64, disable *atomic.Bool) ([]byte, func() error, error) {
	if size <= 0 || size > MaxBlockSize+4096 {
		return nil, nil, fmt.Errorf("%w: cannot map %d bytes", errNoMap, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errNoMap, err)
	}
	// mlock also faults the pages in, from the page cache when they are
	// there, so the hash that follows does not take a fault per page.
	if err := syscall.Mlock(data); err != nil {
		syscall.Munmap(data)
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOMEM) {
			disable.Store(true)
		}
		return nil, nil, fmt.Errorf("locking: %w: %w", errNoMap, err)
	}
	unmap := sync.OnceValue(func() error { return syscall.Munmap(data) })
	return data[:size:size], unmap, nil
}
