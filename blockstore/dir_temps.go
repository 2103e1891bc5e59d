package blockstore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"blockfs/internal/fileutil"
)

// TempCleaner is implemented by stores that keep temp files of writes in
// progress (a DirStore): CleanTemps removes (with dryRun, only counts) those
// of writers that can no longer finish them and that are older than
// olderThan, and returns their number and bytes. The garbage collector calls
// it; a temp file younger than olderThan is left alone even in a dead
// session, so that a store without working locks never loses a live write.
type TempCleaner interface {
	CleanTemps(ctx context.Context, olderThan time.Duration, dryRun bool) (files, bytes int64, err error)
}

var _ TempCleaner = (*DirStore)(nil)

// CleanTemps implements TempCleaner: loose temp files in <root>/tmp and the
// files of sessions whose lock is free (dead writers), each if older than
// olderThan; a dead session left empty is removed too. This store's own
// session and live writers' sessions are not touched.
func (d *DirStore) CleanTemps(ctx context.Context, olderThan time.Duration, dryRun bool) (int64, int64, error) {
	dir := filepath.Join(d.root, tempDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	cutoff := time.Now().Add(-olderThan)
	var files, bytes int64
	clean := func(path string) error {
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.ModTime().After(cutoff) {
			return nil
		}
		files++
		bytes += fi.Size()
		if dryRun {
			return nil
		}
		return os.Remove(path)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return files, bytes, err
		}
		path := filepath.Join(dir, e.Name())
		name := e.Name()
		switch {
		case path == d.ownSession():
		case e.IsDir() && strings.HasPrefix(name, sessionPrefix):
			err = d.cleanSession(path, clean, dryRun)
		case strings.HasPrefix(name, tempPrefix) || strings.HasPrefix(name, newPrefix):
			err = clean(path)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return files, bytes, err
		}
	}
	return files, bytes, nil
}

// cleanSession cleans the old files of session path if its writer is dead.
func (d *DirStore) cleanSession(path string, clean func(string) error, dryRun bool) error {
	lock, err := fileutil.LockFile(filepath.Join(path, sessionLock), true)
	if err != nil {
		return nil // a live writer's (or locks do not work: the next run sees it)
	}
	defer lock.Close()
	ents, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	left := 0
	for _, e := range ents {
		if e.Name() == sessionLock {
			continue
		}
		p := filepath.Join(path, e.Name())
		if err := clean(p); err != nil {
			return err
		}
		if _, err := os.Lstat(p); err == nil {
			left++
		}
	}
	if left == 0 && !dryRun {
		return os.RemoveAll(path)
	}
	return nil
}
