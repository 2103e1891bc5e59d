package blockstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"blockfs/internal/fileutil"
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
// that has meanwhile rotted. Blocks are never rewritten in place by
// blockfs (writes go to a temp file and are renamed), but a shared mapping
// shows whatever anyone later writes into the file (an operator's
// `rsync --inplace`, a tool that ignores the 0444 mode), so a Mapping
// remembers the file's identity and change time as they were before the
// Pool hashed it, and the Pool checks them (Mapping.Unchanged) each time it
// hands the bytes out: a file changed since is mapped and verified afresh,
// never served on the strength of the old hash. docs/operations.md ("Block
// files changed in place") says what this guarantees and what it costs.
//
// Callers find a Mapper with As. A wrapper that observes or changes reads
// (counting, timing, failing them) implements Map itself, forwarding to
// As[Mapper] of the store it wraps, so that mapped reads are not a way
// around it.
type Mapper interface {
	// Map returns block loc's bytes, mapped read-only and locked in
	// memory. An error wrapping errors.ErrUnsupported means this store
	// cannot map (for now): the caller reads with Get instead. A missing
	// block wraps ErrNotFound and a wrong-sized one ErrCorrupt, as with
	// Get. Map need not verify the hash (the Pool does).
	Map(ctx context.Context, loc Locator) (*Mapping, error)
}

// errNoMap is what a store returns from Map when it cannot map.
var errNoMap = errors.ErrUnsupported

// Mapping is a block file mapped in place (see Mapper).
type Mapping struct {
	data  []byte
	fd    int // a duplicate of the mapped file's descriptor, for Unchanged
	seen  fileState
	unmap func() error
}

// fileState is what tells one version of a file from another: which file it
// is, its size, and its change time. The ctime is the one the kernel sets
// (before the data changes) on every write(2), truncate, chmod, link or
// rename, and that no caller can set back, unlike mtime (rsync restores
// mtimes).
type fileState struct {
	dev, ino, size   uint64
	ctimeS, mtimeS   int64
	ctimeNs, mtimeNs uint32
}

// statFile reads fd's fileState. AT_STATX_DONT_SYNC: on a network
// filesystem, use the attributes the client has rather than ask a server
// that may be hung; the client drops its cached pages only once it has
// fetched new attributes, so the cached ones still tell a change.
func statFile(fd int) (fileState, error) {
	var st unix.Statx_t
	const mask = unix.STATX_INO | unix.STATX_SIZE | unix.STATX_CTIME | unix.STATX_MTIME
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, mask, &st); err != nil {
		return fileState{}, err
	}
	return fileState{
		dev: uint64(st.Dev_major)<<32 | uint64(st.Dev_minor), ino: st.Ino, size: st.Size,
		ctimeS: st.Ctime.Sec, ctimeNs: st.Ctime.Nsec, mtimeS: st.Mtime.Sec, mtimeNs: st.Mtime.Nsec,
	}, nil
}

// Bytes returns the mapped block. They are valid until Unmap.
func (m *Mapping) Bytes() []byte { return m.data }

// Shorten limits Bytes to the first n bytes (a file that holds more than
// the block, such as the disk cache's trailer).
func (m *Mapping) Shorten(n int64) { m.data = m.data[:n:n] }

// Unchanged returns nil if the mapped file is, by every sign the kernel
// keeps, the file as it was when mapped, and otherwise an error wrapping
// ErrCorrupt: its bytes may no longer be the ones verified.
func (m *Mapping) Unchanged() error {
	st, err := statFile(m.fd)
	if err != nil {
		return fmt.Errorf("%w: mapped block file: %w", ErrCorrupt, err)
	}
	if st != m.seen {
		return fmt.Errorf("%w: mapped block file changed since it was verified", ErrCorrupt)
	}
	return nil
}

// Unmap undoes the mapping; it is idempotent (a second munmap could hit
// whatever was mapped there since), and the bytes must not be touched
// after the first call.
func (m *Mapping) Unmap() error { return m.unmap() }

// MapFile maps the first size bytes of f shared and read-only and locks
// them in memory, for a Mapper; f may be closed once it returns. Errors
// wrap errors.ErrUnsupported, so the caller's reader falls back to copying;
// if locking was refused for want of permission or RLIMIT_MEMLOCK,
// *disable is set so that the store stops trying (check it before calling).
//
// The file's state is read before it is mapped and hashed, so that a write
// landing at any moment after is caught by Unchanged, and one landing
// before is in the bytes the Pool hashes.
func MapFile(f *os.File, size int64, disable *atomic.Bool) (*Mapping, error) {
	if size <= 0 || size > MaxBlockSize+4096 {
		return nil, fmt.Errorf("%w: cannot map %d bytes", errNoMap, size)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoMap, err)
	}
	seen, err := statFile(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %w", errNoMap, err)
	}
	data, err := fileutil.MapLocked(fd, int(size))
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOMEM) {
			disable.Store(true)
		}
		return nil, fmt.Errorf("%w: %w", errNoMap, err)
	}
	m := &Mapping{data: data[:size:size], fd: fd, seen: seen}
	m.unmap = sync.OnceValue(func() error {
		err := unix.Munmap(data)
		unix.Close(fd)
		return err
	})
	return m, nil
}
