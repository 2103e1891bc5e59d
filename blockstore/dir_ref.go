package blockstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"blockfs/internal/fileutil"
)

// Refs of a DirStore are files under <root>/refs. A PutRef holds an
// exclusive flock on <root>/refs/.lock while it compares and renames, so
// processes sharing the directory (on one machine, or over a filesystem
// with working locks) serialise their updates. The version of a ref is the
// SHA-256 of its content: re-reading it costs nothing extra and two
// writers of the same bytes agree.
var _ RefStore = (*DirStore)(nil)

const refDir = "refs"

func (d *DirStore) refPath(name string) (string, error) {
	if err := CheckRefName(name); err != nil {
		return "", err
	}
	return filepath.Join(d.root, refDir, filepath.FromSlash(name)), nil
}

func refVersion(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:16])
}

// GetRef implements RefStore.
func (d *DirStore) GetRef(ctx context.Context, name string) ([]byte, string, error) {
	p, err := d.refPath(name)
	if err != nil {
		return nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: ref %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, "", fmt.Errorf("blockstore: get ref %s: %w", name, err)
	}
	return data, refVersion(data), nil
}

// PutRef implements RefStore.
func (d *DirStore) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	p, err := d.refPath(name)
	if err != nil {
		return "", err
	}
	if len(data) > MaxRefSize {
		return "", fmt.Errorf("%w: ref %s: %d bytes", ErrTooLarge, name, len(data))
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("blockstore: put ref %s: %w", name, err)
	}
	unlock, err := d.lockRefs()
	if err != nil {
		return "", fmt.Errorf("blockstore: put ref %s: %w", name, err)
	}
	defer unlock()
	cur, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if ifVersion != "" {
			return "", fmt.Errorf("%w: ref %s: gone (wanted version %s)", ErrConflict, name, ifVersion)
		}
	case err != nil:
		return "", fmt.Errorf("blockstore: put ref %s: %w", name, err)
	case ifVersion == "":
		return "", fmt.Errorf("%w: ref %s: exists", ErrConflict, name)
	case refVersion(cur) != ifVersion:
		return "", fmt.Errorf("%w: ref %s: version %s, wanted %s", ErrConflict, name, refVersion(cur), ifVersion)
	}
	tmp, err := d.tempDir()
	if err == nil {
		err = writeAtomic(tmp, p, data)
	}
	if err != nil {
		return "", fmt.Errorf("blockstore: put ref %s: %w", name, err)
	}
	return refVersion(data), nil
}

// lockRefs takes the exclusive lock that serialises ref updates.
func (d *DirStore) lockRefs() (func(), error) {
	f, err := fileutil.LockFile(filepath.Join(d.root, refDir, ".lock"), false)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}
