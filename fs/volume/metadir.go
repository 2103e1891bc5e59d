package volume

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"blockfs/internal/fileutil"
)

// A volume's private log lives in a directory of its own, parent/
// blockfs-meta-*, that Close removes. A killed mount or import cannot, and
// the directory holds a copy of every segment it ingested, so Open removes
// the ones whose owner is dead: the log holds an flock on its LOCK file
// while open (objects.Open), so a LOCK that can be taken belongs to nobody.
const metaDirPrefix = "blockfs-meta-"

// metaLock is the objects log's lock file in its directory.
const metaLock = "LOCK"

// unlockedGrace spares directories without a LOCK file yet: made by a
// process that has not opened its log in them so far.
const unlockedGrace = 10 * time.Minute

// makeMetaDir removes the stale private log directories under parent (""
// is os.TempDir()) and makes a new one.
func makeMetaDir(parent string, logger *log.Logger) (string, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	if n, err := removeStaleMetaDirs(parent); err != nil {
		logger.Printf("blockfs: removing stale metadata directories in %s: %v", parent, err)
	} else if n > 0 {
		logger.Printf("blockfs: removed %d stale metadata directories of dead processes in %s", n, parent)
	}
	dir, err := os.MkdirTemp(parent, metaDirPrefix)
	if err != nil {
		return "", fmt.Errorf("metadata directory: %w", err)
	}
	return dir, nil
}

// removeStaleMetaDirs removes every blockfs-meta-* directory in parent
// whose log lock can be taken, and reports how many it removed.
func removeStaleMetaDirs(parent string) (int, error) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), metaDirPrefix) {
			continue
		}
		ok, err := removeIfStale(filepath.Join(parent, e.Name()))
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed++
		}
	}
	return removed, errors.Join(errs...)
}

// lockSetup spares a LOCK file this young even if its lock is free: its
// owner creates it and flocks it in two steps, and a cleaner that took the
// lock between them would remove a live log's directory (seen under
// concurrent gc, import and mount processes).
const lockSetup = time.Minute

func removeIfStale(dir string) (bool, error) {
	lockPath := filepath.Join(dir, metaLock)
	if fi, err := os.Lstat(lockPath); errors.Is(err, os.ErrNotExist) {
		fi, err := os.Lstat(dir)
		if err != nil || time.Since(fi.ModTime()) < unlockedGrace {
			return false, nil
		}
	} else if err == nil && time.Since(fi.ModTime()) < lockSetup {
		return false, nil
	}
	f, err := fileutil.LockFile(lockPath, true)
	if errors.Is(err, fileutil.ErrLocked) || errors.Is(err, os.ErrNotExist) {
		return false, nil // alive, or removed by another cleaner meanwhile
	}
	if err != nil {
		return false, err
	}
	defer f.Close() // held while removing: a second cleaner skips it
	if err := os.RemoveAll(dir); err != nil {
		return false, err
	}
	return true, nil
}
