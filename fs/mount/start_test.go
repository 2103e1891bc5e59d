package mount_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), " "+dir+" ")
}

// TestBadRootNotMounted: a store whose root node does not decode, or is
// not a directory, fails Start with a clear error and leaves nothing
// mounted.
func TestBadRootNotMounted(t *testing.T) {
	testsvc.RequireFUSE(t)
	for name, value := range map[string][]byte{
		"undecodable": {0xff, 0xfe, 0xfd},
		"a file":      (&tree.Node{Kind: tree.KindFile, Mode: 0o644}).AppendBinary(nil),
	} {
		t.Run(name, func(t *testing.T) {
			store := fstest.StoreWithFile(t, "/x", []byte("x"), chunker.Config{})
			writeEntries(t, store, objects.Entry{Keys: [][]byte{[]byte("/")}, Value: value})
			vol, err := volume.Open(context.Background(), store, volume.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer vol.Close()
			dir := t.TempDir()
			m, err := mount.Start(dir, vol, mount.Options{Logger: fstest.DiscardLogger()})
			if err == nil {
				m.Unmount()
				m.Wait()
				t.Fatal("a store with a bad root mounted")
			}
			if !strings.Contains(err.Error(), "root") {
				t.Errorf("error does not say what is wrong: %v", err)
			}
			if isMounted(t, dir) {
				syscall.Unmount(dir, syscall.MNT_DETACH)
				t.Errorf("mountpoint left mounted after: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestNonEmptyMountpoint: mounting over a directory with files is refused
// (they would be hidden) unless AllowNonEmpty.
func TestNonEmptyMountpoint(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := fstest.StoreWithFile(t, "/x", []byte("x"), chunker.Config{})
	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	dir := t.TempDir()
	fstest.WriteFile(t, filepath.Join(dir, "hidden"), nil, 0o644)
	if _, err := mount.Start(dir, vol, mount.Options{}); !errors.Is(err, mount.ErrMountpoint) || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("mount over a non-empty directory: %v, want refused", err)
	}
	if isMounted(t, dir) {
		t.Fatal("mounted over a non-empty directory")
	}
	m, err := mount.Start(dir, vol, mount.Options{AllowNonEmpty: true})
	if err != nil {
		t.Fatalf("with AllowNonEmpty: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x/f")); err != nil {
		t.Error(err)
	}
	m.Unmount()
	m.Wait()
}

// TestStatfs: statfs (df) reports the snapshot's bytes and nodes.
func TestStatfs(t *testing.T) {
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "a"), fstest.RandomBytes(12, 3<<20+5), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "sub/b"), fstest.RandomBytes(13, 100), 0o644)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/s", chunker.Config{})
	tm := fstest.MountStore(t, store, mount.Options{})
	var st syscall.Statfs_t
	if err := syscall.Statfs(tm.Dir, &st); err != nil {
		t.Fatal(err)
	}
	const bytes = 3<<20 + 5 + 100
	if st.Bsize != 4096 || uint64(st.Blocks) != (bytes+4095)/4096 || st.Bfree != 0 {
		t.Errorf("statfs bsize %d blocks %d free %d, want 4096, %d, 0", st.Bsize, st.Blocks, st.Bfree, (bytes+4095)/4096)
	}
	// /, /s, /s/a, /s/sub, /s/sub/b
	if st.Files != 5 {
		t.Errorf("statfs files %d, want 5", st.Files)
	}
	if out := fstest.Sh(t, "df", "-k", tm.Dir); !strings.Contains(out, "blockfs:") || !strings.Contains(out, tm.Dir) {
		t.Errorf("df does not list the mount:\n%s", out)
	}
}
