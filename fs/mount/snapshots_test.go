package mount_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// TestSnapshotsDir: a running mount serves tag v1 under
// /.blockfs/snapshots/v1 byte-identical to a mount --at v1 (every file's
// bytes, and the listing with modes, sizes, mtimes and link targets),
// while / shows the newer import and its listing does not show .blockfs.
// A tag made after the mount started shows up, and a deleted one goes.
func TestSnapshotsDir(t *testing.T) {
	testsvc.RequireFUSE(t)
	ctx := context.Background()
	store := filepath.Join(t.TempDir(), "store")
	src := fstest.SampleTree(t)
	fstest.ImportWith(t, store, volume.Options{}, src, "/", importer.Options{})
	cat, err := volume.OpenCatalog(ctx, store, volume.Options{}.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, err := cat.Tag(ctx, "v1", ""); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, filepath.Join(src, "a/b/c/deep.txt"), []byte("deeper in v2\n"), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "v2-only"), []byte("new in v2\n"), 0o644)
	if err := os.Remove(filepath.Join(src, "empty")); err != nil {
		t.Fatal(err)
	}
	fstest.ImportWith(t, store, volume.Options{}, src, "/", importer.Options{Delete: true})

	opts := mount.Options{Refresh: -1, Logger: fstest.DiscardLogger()}
	main := fstest.MountWith(t, store, volume.Options{}, opts)
	at := fstest.MountWith(t, store, volume.Options{At: "v1"}, opts)

	if got := fstest.Sh(t, "cat", main.Path("a/b/c/deep.txt")); got != "deeper in v2\n" {
		t.Fatalf("/ does not show v2: deep.txt = %q", got)
	}
	if got := fstest.Sh(t, "ls", "-a", main.Dir); strings.Contains(got, ".blockfs") {
		t.Fatalf("ls -a / lists .blockfs:\n%s", got)
	}
	if got := fstest.Sh(t, "ls", main.Path(".blockfs/snapshots")); got != "v1\n" {
		t.Fatalf("ls /.blockfs/snapshots = %q, want v1", got)
	}
	snap := main.Path(".blockfs/snapshots/v1")
	if _, err := os.Stat(filepath.Join(snap, "v2-only")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("v2's new file is in the v1 snapshot: %v", err)
	}
	fstest.CmpTrees(t, at.Dir, snap)
	list := func(dir string) string {
		return fstest.Sh(t, "sh", "-c", "cd "+dir+" && find . -printf '%p %y %m %s %T@ %l %U %G\\n' | sort")
	}
	if got, want := list(snap), list(at.Dir); got != want {
		t.Fatalf("listing of the snapshot differs from --at v1:\n got %s\nwant %s", got, want)
	}

	// Inode numbers of the snapshot are not those of the main tree.
	s1, s2 := statIno(t, main.Path("a")), statIno(t, filepath.Join(snap, "a"))
	if s1 == s2 {
		t.Errorf("/a and the snapshot's /a share inode %d", s1)
	}

	// Looked up before it exists: the kernel's negative entry must not
	// hide the tag once made.
	if _, err := os.Stat(main.Path(".blockfs/snapshots/v2")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("tag v2 before it is made: %v", err)
	}
	if _, err := cat.Tag(ctx, "v2", ""); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, "tag v2 in /.blockfs/snapshots", func() bool {
		_, err := os.Stat(main.Path(".blockfs/snapshots/v2/v2-only"))
		return err == nil
	})
	fstest.CmpTrees(t, main.Dir, main.Path(".blockfs/snapshots/v2"))
	old, err := os.Open(filepath.Join(snap, "a/b/c/deep.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := cat.DeleteTag(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, "tag v1 gone from /.blockfs/snapshots", func() bool {
		_, err := os.Stat(snap)
		return errors.Is(err, fs.ErrNotExist)
	})
	if got := fstest.Sh(t, "ls", main.Path(".blockfs/snapshots")); got != "v2\n" {
		t.Fatalf("ls /.blockfs/snapshots after deleting v1 = %q, want v2", got)
	}

	// v1 made again on v2: the path serves v2, the handle still v1.
	if _, err := cat.Tag(ctx, "v1", ""); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, "moved tag v1 serving v2", func() bool {
		_, err := os.Stat(filepath.Join(snap, "v2-only"))
		return err == nil
	})
	fstest.CmpTrees(t, main.Dir, snap)
	got := make([]byte, 64)
	n, err := old.ReadAt(got, 0)
	if string(got[:n]) != "deep\n" {
		t.Fatalf("a handle opened on v1 reads %q (%v) after v1 moved, want v1's bytes", got[:n], err)
	}
}

func statIno(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
