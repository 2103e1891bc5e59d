package mount_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// TestMountFollowsRollback: a real mount shows a newer import after a
// refresh, and after a rollback to the older snapshot its next refresh
// serves that snapshot again (the newer file gone, the old bytes back),
// while files opened on either version keep reading the version they
// opened.
func TestMountFollowsRollback(t *testing.T) {
	testsvc.RequireFUSE(t)
	ctx := context.Background()
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	v1, v2 := fstest.RandomBytes(41, 300<<10), fstest.RandomBytes(42, 200<<10)
	fstest.WriteFile(t, filepath.Join(src, "f"), v1, 0o644)
	fstest.ImportWith(t, store, volume.Options{}, src, "/data", importer.Options{})
	cat, err := volume.OpenCatalog(ctx, store, volume.Options{}.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, err := cat.Tag(ctx, "v1", ""); err != nil {
		t.Fatal(err)
	}

	tm := fstest.MountWith(t, store, volume.Options{}, mount.Options{Refresh: -1, CacheTimeout: time.Millisecond, Logger: fstest.DiscardLogger()})
	h1, err := os.Open(tm.Path("data/f"))
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()

	fstest.WriteFile(t, filepath.Join(src, "f"), v2, 0o644)
	fstest.WriteFile(t, filepath.Join(src, "new"), []byte("new\n"), 0o644)
	fstest.ImportWith(t, store, volume.Options{}, src, "/data", importer.Options{})
	if changed, err := mount.RefreshNow(tm.Mount); err != nil || !changed {
		t.Fatalf("refresh after the second import = %v, %v", changed, err)
	}
	if got := fstest.Sh(t, "cat", tm.Path("data/f")); got != string(v2) {
		t.Fatal("the mount does not show the second import")
	}
	h2, err := os.Open(tm.Path("data/f"))
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()

	if _, err := cat.Rollback(ctx, "v1", false); err != nil {
		t.Fatal(err)
	}
	if changed, err := mount.RefreshNow(tm.Mount); err != nil || !changed {
		t.Fatalf("refresh after the rollback = %v, %v", changed, err)
	}
	if got := fstest.Sh(t, "cat", tm.Path("data/f")); got != string(v1) {
		t.Fatal("after the rollback the mount does not serve v1's bytes")
	}
	if _, err := os.Stat(tm.Path("data/new")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the file added after v1 is still there: %v", err)
	}
	for name, c := range map[string]struct {
		f    *os.File
		want []byte
	}{"opened on v1": {h1, v1}, "opened on v2": {h2, v2}} {
		got := make([]byte, len(c.want))
		if _, err := c.f.ReadAt(got, 0); err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("handle %s does not read its version after the rollback: %v", name, err)
		}
	}
	// The restored snapshot's parts are served as they are: no private
	// log to rebuild (an ingesting mount rebuilds one, see volume's tests).
	if st := tm.Stats().Meta; !st.PartsServed || st.Rebuilds != 0 {
		t.Errorf("meta stats: %+v, want the restored parts served and no rebuild", st)
	}
}
