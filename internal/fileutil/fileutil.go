// Package fileutil holds the few filesystem steps that blockfs's on-disk
// stores (the directory store, the disk cache, the object log) all need and
// must all get right the same way: an exclusive lock on a LOCK file, a
// durable rename (file synced, renamed, directory synced), temp files that
// never outlive a failed write, and a mapping locked in memory.
package fileutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by LockFile when another open file (in this process
// or another) holds the lock and the caller asked not to wait.
var ErrLocked = errors.New("locked by another process")

// LockFile opens (creating it, mode 0644) the file at path and takes an
// exclusive flock on it, waiting for it unless nowait is set, in which case
// a held lock gives an error wrapping ErrLocked. Closing the returned file
// releases the lock, and so does the death of the process, which is why
// blockfs uses flock rather than lock files that say a pid: a crashed
// holder can never wedge the next one.
func LockFile(path string, nowait bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if nowait {
		how |= syscall.LOCK_NB
	}
	if err := flock(f, how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// flock retries EINTR: a signal arriving while a LOCK_EX waits must not
// turn into a failed lock.
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// SyncDir makes creations, renames and removals in dir durable: a file's
// own fsync does not cover the name that points at it.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteTemp writes parts, one after the other, to a new temp file in dir
// whose name starts with prefix, sets its mode to perm, and returns its
// path. On any error (ENOSPC half-way included) the temp file is removed
// before WriteTemp returns, so a failed write never holds disk space. With
// sync the file is fsynced; without, writeback starts at once
// (sync_file_range), so the disk works while the caller goes on instead of
// all at once at a later sync; that is advisory, and whoever needs
// durability syncs later.
func WriteTemp(dir, prefix string, perm os.FileMode, sync bool, parts ...[]byte) (tmp string, err error) {
	f, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	for _, p := range parts {
		if _, err = f.Write(p); err != nil {
			return "", err
		}
	}
	if err = f.Chmod(perm); err != nil {
		return "", err
	}
	if sync {
		err = f.Sync()
	} else {
		_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
	if err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

// RenameDurable renames tmp to final and syncs final's directory, so that
// once it returns the name survives a crash (tmp's data must already be
// synced). If the rename fails, tmp is removed: nothing is left behind.
func RenameDurable(tmp, final string) error {
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(final))
}

// WriteFileDurable writes data to final atomically and durably: a synced
// temp file in tmpDir (which must be on final's filesystem), renamed into
// place, directory synced. A reader or a crash sees the old file or the
// whole new one.
func WriteFileDurable(tmpDir, prefix string, perm os.FileMode, final string, data []byte) error {
	tmp, err := WriteTemp(tmpDir, prefix, perm, true, data)
	if err != nil {
		return err
	}
	return RenameDurable(tmp, final)
}

// MapLocked maps the first size bytes of the file open as fd, shared and
// read-only, and locks them in memory. mlock also faults the pages in, from
// the page cache when they are there, so whoever hashes the bytes next does
// not take a fault per page. A mapping that cannot be locked is undone.
func MapLocked(fd int, size int) ([]byte, error) {
	data, err := unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	if err := unix.Mlock(data); err != nil {
		unix.Munmap(data)
		return nil, fmt.Errorf("locking: %w", err)
	}
	return data, nil
}
