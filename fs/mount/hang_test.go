package mount_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
)

// mountWrapped mounts the directory store at store with its block store
// wrapped by wrap (a Gate, a delay), and returns the mountpoint and mount.
func mountWrapped(t *testing.T, store string, opts mount.Options, wrap func(blockstore.Store) blockstore.Store) (string, *mount.Mount) {
	t.Helper()
	m := fstest.MountWrapped(t, store, volume.Options{}, opts, wrap)
	return m.Dir, m.Mount
}

// TestHungStoreReadBoundedByOneTimeout: over a store whose reads never
// return, one read(2) across several blocks fails with EIO within one
// fetch timeout (plus scheduling margin), not one per block or per kernel
// retry.
func TestHungStoreReadBoundedByOneTimeout(t *testing.T) {
	const bs = 256 << 10
	store := fstest.StoreWithFile(t, "/h", fstest.RandomBytes(9, 8*bs), chunker.Config{Fixed: true, Avg: bs})
	gate := storetest.NewGate(nil)
	const timeout = time.Second
	dir, m := mountWrapped(t, store, mount.Options{FetchTimeout: timeout, Readahead: -1, Logger: fstest.DiscardLogger()},
		func(s blockstore.Store) blockstore.Store { gate.Store = s; return gate })
	t.Cleanup(gate.Open)
	f, err := os.Open(filepath.Join(dir, "h/f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := syscall.Pread(int(f.Fd()), make([]byte, 1<<20), bs/2)
		done <- err
	}()
	deadline := time.NewTimer(timeout + 700*time.Millisecond)
	defer deadline.Stop()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("read over a hung store: %v, want EIO", err)
		}
		t.Logf("read failed after %v; fuse %+v", time.Since(start), m.Stats().Fuse)
	case <-deadline.C:
		<-done
		t.Fatalf("read over a hung store still blocked %v after it began (fetch timeout %v); it took %v; fuse %+v",
			timeout+700*time.Millisecond, timeout, time.Since(start), m.Stats().Fuse)
	}
}

// TestCopyFromTruncatedMapping: copying out of a mapping whose file was
// truncated underneath is an error, not a SIGBUS that kills the mount.
func TestCopyFromTruncatedMapping(t *testing.T) {
	p := filepath.Join(t.TempDir(), "block")
	fstest.WriteFile(t, p, fstest.RandomBytes(10, 64<<10), 0o644)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, 64<<10, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(data)
	dst := make([]byte, 64<<10)
	if n, err := mount.CopyMapped(dst, data); err != nil || n != len(dst) {
		t.Fatalf("copy of an intact mapping: %d %v", n, err)
	}
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	n, err := mount.CopyMapped(dst, data)
	if !errors.Is(err, blockstore.ErrCorrupt) || n != 0 {
		t.Fatalf("copy of a truncated mapping: %d %v, want ErrCorrupt", n, err)
	}
	t.Log(err)
}
