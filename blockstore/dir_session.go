package blockstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"blockfs/internal/fileutil"
)

// A DirStore that writes keeps its temp files in a session directory of its
// own, <root>/tmp/s-<random>, holding an flock on the LOCK file inside for
// as long as the store lives (the process's death releases it). Whoever
// opens the store removes every session whose lock it can take: those
// belong to dead processes (an import killed, or failed on a full disk), so
// a retry gets their space back at once instead of an hour later, and a
// running importer's session, locked, is never touched.
//
// The session is made under a name cleaners ignore (.new-*), locked, then
// renamed into place, so no cleaner can see it unlocked. Loose temp files
// (older versions) and .new-* leftovers of a crash still go by age
// (staleTemp), as does everything when the filesystem has no working locks.
const (
	sessionPrefix = "s-"
	newPrefix     = ".new-"
	sessionLock   = "LOCK"
)

// tempDir returns the directory this store writes its temp files in,
// making its session on first use.
func (d *DirStore) tempDir() (string, error) {
	d.smu.Lock()
	defer d.smu.Unlock()
	if d.session != "" {
		return d.session, nil
	}
	top := filepath.Join(d.root, tempDir)
	if err := os.MkdirAll(top, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(top, newPrefix)
	if err != nil {
		return "", err
	}
	lock, err := fileutil.LockFile(filepath.Join(tmp, sessionLock), true)
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	final := filepath.Join(top, sessionPrefix+strings.TrimPrefix(filepath.Base(tmp), newPrefix))
	if err := os.Rename(tmp, final); err != nil {
		lock.Close()
		os.RemoveAll(tmp)
		return "", err
	}
	d.session, d.sessionLock = final, lock
	return final, nil
}

// RemoveStaleTemps removes the temp files of dead writers: sessions whose
// lock is free, and loose temp files older than staleTemp. OpenDir calls it;
// an importer that failed on a full disk may call it again before retrying.
func (d *DirStore) RemoveStaleTemps() error {
	dir := filepath.Join(d.root, tempDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		if path == d.ownSession() {
			continue
		}
		var err error
		switch name := e.Name(); {
		case e.IsDir() && strings.HasPrefix(name, sessionPrefix):
			err = removeDeadSession(path, e)
		case strings.HasPrefix(name, tempPrefix) || strings.HasPrefix(name, newPrefix):
			if old(e) {
				err = os.RemoveAll(path)
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", path, err)
		}
	}
	return nil
}

func (d *DirStore) ownSession() string {
	d.smu.Lock()
	defer d.smu.Unlock()
	return d.session
}

// removeDeadSession removes session directory path if no live store holds
// its lock; without working locks, only once it is older than staleTemp.
func removeDeadSession(path string, e fs.DirEntry) error {
	lock, err := fileutil.LockFile(filepath.Join(path, sessionLock), true)
	switch {
	case errors.Is(err, fileutil.ErrLocked):
		return nil // a live writer's
	case err != nil:
		if old(e) {
			return os.RemoveAll(path)
		}
		return nil
	}
	defer lock.Close()
	return os.RemoveAll(path)
}

func old(e fs.DirEntry) bool {
	fi, err := e.Info()
	return err == nil && time.Since(fi.ModTime()) >= staleTemp
}

// Close ends this store's temp session: its directory (temp files of
// writes that did not finish, such as those an interrupted import left)
// is removed and its lock released, so that nothing of ours stays open on
// the store's filesystem. A later write starts a new session.
func (d *DirStore) Close() error {
	d.smu.Lock()
	defer d.smu.Unlock()
	if d.session == "" {
		return nil
	}
	err := os.RemoveAll(d.session)
	d.sessionLock.Close()
	d.session, d.sessionLock = "", nil
	return err
}
