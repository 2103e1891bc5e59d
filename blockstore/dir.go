package blockstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Blocks are written to a temp file in <root>/tmp and renamed into place.
// One temp folder, rather than temp files beside the blocks, means cleaning
// up after a crash reads one small directory instead of the whole store.
// A crash can leave temp files behind; they can never be mistaken for blocks
// (a block's name is exactly 64 hex characters).
const (
	tempDir    = "tmp"
	tempPrefix = ".tmp-"
	// staleTemp is how old a temp file must be before OpenDir removes it:
	// younger ones may belong to an import running in another process.
	staleTemp = time.Hour
)

// DirStore keeps each block as a file <root>/<first 2 hex>/<64 hex>.
//
// The two-character fan-out keeps directories small enough for any
// filesystem. Paths are only ever built from a Hash, never from a caller's
// string, so no input can name a file outside root. Writes are atomic (temp
// file in the destination directory, write, fsync, rename, fsync directory):
// a reader or a crash sees either the whole block or no block.
//
// Several processes may use one root at once (imports and mounts): OpenDir
// removes only temp files older than staleTemp.
type DirStore struct {
	root string

	// Deferred mode (DeferSync): blocks written but not yet flushed.
	deferred bool
	pmu      sync.Mutex
	pending  map[Hash]string // hash -> temp file

	// noMap is set once locking a mapping failed for lack of permission or
	// of RLIMIT_MEMLOCK: from then on Map says ErrUnsupported at once and
	// the Pool copies with Get, rather than paying a failed mlock per block.
	noMap atomic.Bool
}

var _ Store = (*DirStore)(nil)

// OpenDir opens the store rooted at root. If root does not exist, OpenDir
// creates it when create is true and otherwise returns an error wrapping
// fs.ErrNotExist. Stale temp files left by a crash are removed.
func OpenDir(root string, create bool) (*DirStore, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("blockstore: open dir store %q: %w", root, err)
	}
	if create {
		if err := os.MkdirAll(filepath.Join(abs, tempDir), 0o755); err != nil {
			return nil, fmt.Errorf("blockstore: create dir store %q: %w", root, err)
		}
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("blockstore: open dir store %q: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("blockstore: open dir store %q: not a directory", root)
	}
	d := &DirStore{root: abs}
	if err := d.removeTemps(); err != nil {
		return nil, fmt.Errorf("blockstore: open dir store %q: cleaning temp files: %w", root, err)
	}
	return d, nil
}

// Root returns the absolute directory the store lives in.
func (d *DirStore) Root() string { return d.root }

func (d *DirStore) dir(h Hash) string { return filepath.Join(d.root, h.String()[:2]) }

func (d *DirStore) path(h Hash) string {
	s := h.String()
	return filepath.Join(d.root, s[:2], s)
}

// Get implements Store. A file whose size differs from loc.Size yields an
// error wrapping ErrCorrupt (the locator or the file is wrong; either way
// these are not the requested bytes).
func (d *DirStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := loc.validate(); err != nil {
		return 0, err
	}
	if int64(len(dst)) < loc.Size {
		return 0, fmt.Errorf("blockstore: get %v: %w: buffer of %d bytes", loc, io.ErrShortBuffer, len(dst))
	}
	f, err := d.openBlock("get", loc)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.ReadFull(f, dst[:loc.Size])
	if err != nil {
		return n, fmt.Errorf("blockstore: get %v: %w", loc, err)
	}
	return n, nil
}

// openBlock opens block loc's file (or, in deferred mode, its temp file not
// yet renamed into place) and checks its size: a file whose size differs
// from loc.Size yields an error wrapping ErrCorrupt.
func (d *DirStore) openBlock(op string, loc Locator) (*os.File, error) {
	f, err := os.Open(d.path(loc.Hash))
	if tmp, ok := d.pendingFile(loc.Hash); ok && errors.Is(err, fs.ErrNotExist) {
		f, err = os.Open(tmp)
	}
	if err != nil {
		return nil, d.wrapMissing(op, loc.Hash, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blockstore: %s %v: %w", op, loc, err)
	}
	if fi.Size() != loc.Size {
		f.Close()
		return nil, fmt.Errorf("%w: %s %v: file has %d bytes", ErrCorrupt, op, loc, fi.Size())
	}
	return f, nil
}

// Put implements Store. If the block exists with the right size, Put only
// stats it; a wrong-sized file (damage) is replaced.
func (d *DirStore) Put(ctx context.Context, h Hash, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckPut(h, data); err != nil {
		return err
	}
	if fi, err := os.Stat(d.path(h)); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return nil
	}
	return d.PutHashed(ctx, h, data)
}

// PutHashed implements HashedPutter: Put without re-hashing data or
// checking that the block exists.
func (d *DirStore) PutHashed(ctx context.Context, h Hash, data []byte) error {
	if len(data) > MaxBlockSize {
		return fmt.Errorf("%w: put %v: %d bytes", ErrTooLarge, h, len(data))
	}
	final := d.path(h)
	if d.deferred {
		return d.putDeferred(h, data)
	}
	dir := d.dir(h)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("blockstore: put %v: %w", h, err)
	}
	if err := writeAtomic(filepath.Join(d.root, tempDir), dir, final, data); err != nil {
		return fmt.Errorf("blockstore: put %v: %w", h, err)
	}
	return nil
}

// writeAtomic writes data to final via a temp file in tmpDir (same
// filesystem, so the rename is atomic) and syncs the file and final's
// directory, so the block survives a crash once Put returns.
func writeAtomic(tmpDir, dir, final string, data []byte) error {
	tmp, err := WriteTemp(tmpDir, true, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// WriteTemp writes parts, one after the other, to a new read-only temp file
// in tmpDir and returns its path; on error nothing is left behind. With
// sync the file is fsynced before WriteTemp returns. Without, writeback
// starts at once (sync_file_range), so the disk works while the caller
// goes on instead of all at once at a later sync; that is advisory, and
// whoever needs durability syncs later (DirStore.Flush), or can tell a
// torn file from a whole one (the disk cache's trailer).
func WriteTemp(tmpDir string, sync bool, parts ...[]byte) (tmp string, err error) {
	f, err := os.CreateTemp(tmpDir, tempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// A store directory made by hand, copied without its empty tmp or
		// cleaned by an operator: make tmp (only tmp itself) instead of
		// failing every write.
		if err = os.Mkdir(tmpDir, 0o755); err == nil || errors.Is(err, fs.ErrExist) {
			f, err = os.CreateTemp(tmpDir, tempPrefix+"*")
		}
	}
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
	// Blocks are immutable: make the file read-only to say so.
	if err = f.Chmod(0o444); err != nil {
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

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Has implements Store.
func (d *DirStore) Has(ctx context.Context, h Hash) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, err := os.Stat(d.path(h))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		_, pending := d.pendingFile(h)
		return pending, nil
	}
	return false, fmt.Errorf("blockstore: has %v: %w", h, err)
}

// List implements Store. Only names that are a valid Hash in the directory
// matching their prefix are reported; temp files and strays are skipped. A
// block deleted while List runs may or may not be reported.
func (d *DirStore) List(ctx context.Context, fn func(Locator) error) error {
	subs, err := os.ReadDir(d.root)
	if err != nil {
		return fmt.Errorf("blockstore: list: %w", err)
	}
	for _, sub := range subs {
		if !sub.IsDir() || !isFanout(sub.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := os.ReadDir(filepath.Join(d.root, sub.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("blockstore: list: %w", err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), sub.Name()) {
				continue
			}
			h, err := ParseHash(e.Name())
			if err != nil {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted under us
				}
				return fmt.Errorf("blockstore: list: %w", err)
			}
			if err := fn(Locator{Hash: h, Size: fi.Size()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements Store.
func (d *DirStore) Delete(ctx context.Context, h Hash) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.dropPending(h) {
		return nil
	}
	if err := os.Remove(d.path(h)); err != nil {
		return d.wrapMissing("delete", h, err)
	}
	if err := syncDir(d.dir(h)); err != nil {
		return fmt.Errorf("blockstore: delete %v: %w", h, err)
	}
	return nil
}

// wrapMissing turns "no such file" into ErrNotFound while keeping the
// original error (so fs.ErrNotExist still matches too).
func (d *DirStore) wrapMissing(op string, h Hash, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s %v: %w", ErrNotFound, op, h, err)
	}
	return fmt.Errorf("blockstore: %s %v: %w", op, h, err)
}

// removeTemps deletes stale temp files that a crash left behind.
func (d *DirStore) removeTemps() error {
	dir := filepath.Join(d.root, tempDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < staleTemp {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// isFanout reports whether name is a two-lowercase-hex directory name.
func isFanout(name string) bool {
	if len(name) != 2 {
		return false
	}
	_, ok1 := unhex(name[0])
	_, ok2 := unhex(name[1])
	return ok1 && ok2
}
