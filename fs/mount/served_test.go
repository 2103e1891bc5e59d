package mount_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// TestOldestServedFollowsOpenHandles: a handle open on the first version
// of a file keeps OldestServed at that version's generation while a newer
// import overwrites the file and an rm removes it; once the handle is
// closed, OldestServed is the volume's current generation.
func TestOldestServedFollowsOpenHandles(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	v1, v2 := fstest.RandomBytes(51, 300<<10), fstest.RandomBytes(52, 200<<10)
	fstest.WriteFile(t, filepath.Join(src, "f"), v1, 0o644)
	fstest.ImportWith(t, store, volume.Options{}, src, "/data", importer.Options{})

	tm := fstest.MountWith(t, store, volume.Options{}, mount.Options{Refresh: -1, CacheTimeout: time.Millisecond, Logger: fstest.DiscardLogger()})
	first := tm.Stats().Meta.Generation
	if got := tm.OldestServed(); got != first {
		t.Fatalf("OldestServed with nothing open = %d, want the current %d", got, first)
	}
	h1, err := os.Open(tm.Path("data/f"))
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()

	fstest.WriteFile(t, filepath.Join(src, "f"), v2, 0o644)
	fstest.ImportWith(t, store, volume.Options{}, src, "/data", importer.Options{})
	if changed, err := mount.RefreshNow(tm.Mount); err != nil || !changed {
		t.Fatalf("refresh after the second import = %v, %v", changed, err)
	}
	if got := fstest.Sh(t, "cat", tm.Path("data/f")); got != string(v2) {
		t.Fatal("the mount does not show the second import")
	}
	writeEntries(t, store, tree.DeleteEntry("/data/f"))
	if changed, err := mount.RefreshNow(tm.Mount); err != nil || !changed {
		t.Fatalf("refresh after the rm = %v, %v", changed, err)
	}
	if _, err := os.Stat(tm.Path("data/f")); !os.IsNotExist(err) {
		t.Fatalf("data/f after the rm: %v", err)
	}
	current := tm.Stats().Meta.Generation
	if current < first+2 {
		t.Fatalf("generation %d after an import and an rm since %d", current, first)
	}
	if got := tm.OldestServed(); got != first {
		t.Fatalf("OldestServed with a handle open on generation %d = %d", first, got)
	}
	got := make([]byte, len(v1))
	if _, err := h1.ReadAt(got, 0); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("the handle does not read its version: %v", err)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	// The kernel sends RELEASE after close(2) returns, asynchronously.
	testsvc.WaitFor(t, "OldestServed to reach the current generation after the close", func() bool { return tm.OldestServed() == current })
}
