package mount_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

// wideTree writes dirs directories of files files each (tiny, distinct
// contents) under a new directory and returns it.
func wideTree(t *testing.T, dirs, files int) string {
	t.Helper()
	src := t.TempDir()
	for d := range dirs {
		dir := filepath.Join(src, fmt.Sprintf("d%03d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range files {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", f)), []byte(fmt.Sprintf("%d/%d\n", d, f)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return src
}

// TestSecondFindMakesNoLookups: over a 10,000-file tree, the first find
// gets every entry from READDIRPLUS (no LOOKUP per entry) and the second
// is answered by the kernel alone: no LOOKUP, no READDIR, and an `ls -lR`
// after it no GETATTR either.
func TestSecondFindMakesNoLookups(t *testing.T) {
	testsvc.RequireFUSE(t)
	const dirs, files = 20, 500
	store := filepath.Join(t.TempDir(), "store")
	// Written as metadata directly (empty files): an import of 10,000
	// files takes long on a busy machine, and no file is read here.
	fstest.ImportInto(t, store, t.TempDir(), "/data", chunker.Config{})
	var entries []objects.Entry
	for d := range dirs {
		dir := fmt.Sprintf("/data/d%03d", d)
		entries = append(entries, tree.Entry(dir, &tree.Node{Kind: tree.KindDir, Mode: 0o755}))
		for f := range files {
			entries = append(entries, tree.Entry(fmt.Sprintf("%s/f%04d", dir, f), &tree.Node{Kind: tree.KindFile, Mode: 0o644}))
		}
	}
	writeEntries(t, store, entries...)
	tm := fstest.MountStore(t, store, mount.Options{Refresh: -1})

	find := func() {
		t.Helper()
		out := fstest.Sh(t, "find", tm.Dir, "-type", "f")
		if n := strings.Count(out, "\n"); n != dirs*files {
			t.Fatalf("find listed %d files, want %d", n, dirs*files)
		}
	}
	before := tm.Stats().Fuse
	find()
	first := tm.Stats().Fuse
	// The mountpoint's root and /data are the only names the kernel may
	// have to look up: everything below comes with its directory.
	if n := first.Lookups - before.Lookups; n > 2 {
		t.Errorf("first find made %d lookups, want at most 2", n)
	}
	if first.PlusEntries-before.PlusEntries < dirs*files {
		t.Errorf("first find got %d entries by READDIRPLUS, want at least %d", first.PlusEntries-before.PlusEntries, dirs*files)
	}
	find()
	second := tm.Stats().Fuse
	if n := second.Lookups - first.Lookups; n != 0 {
		t.Errorf("second find made %d lookups, want 0", n)
	}
	if n := second.Readdirs - first.Readdirs; n != 0 {
		t.Errorf("second find read %d listings, want 0 (the kernel keeps them)", n)
	}
	if out := fstest.Sh(t, "ls", "-lR", tm.Dir); strings.Count(out, "-rw-r--r--") != dirs*files {
		t.Fatalf("ls -lR does not show %d files", dirs*files)
	}
	third := tm.Stats().Fuse
	if n := third.Lookups - second.Lookups; n != 0 {
		t.Errorf("ls -lR made %d lookups, want 0", n)
	}
	if n := third.Getattrs - second.Getattrs; n != 0 {
		t.Errorf("ls -lR made %d getattrs, want 0 (attributes came with the entries)", n)
	}
	// Inode numbers are distinct, and the same in listings as in stat.
	listed := strings.TrimSpace(fstest.Sh(t, "find", tm.Path("data/d007"), "-printf", "%i %p\n"))
	var paths []string
	seen := map[string]string{}
	for _, line := range strings.Split(listed, "\n") {
		ino, p, _ := strings.Cut(line, " ")
		if other, dup := seen[ino]; dup {
			t.Errorf("inode %s shared by %s and %s", ino, other, p)
		}
		seen[ino] = p
		paths = append(paths, p)
	}
	if stat := strings.TrimSpace(fstest.Sh(t, "stat", append([]string{"-c", "%i %n"}, paths...)...)); stat != listed {
		t.Errorf("inode numbers listed differ from stat's")
	}
}

// TestRefreshInvalidatesExactlyWhatChanged: with everything of a directory
// cached by the kernel, a refresh that changes one file invalidates that
// entry and the directory's listing, nothing else: the other files are
// still answered without a LOOKUP, the changed one shows its new content.
// Then a refresh that deletes one file and adds another shows both.
func TestRefreshInvalidatesExactlyWhatChanged(t *testing.T) {
	testsvc.RequireFUSE(t)
	src := wideTree(t, 1, 10)
	fstest.WriteFile(t, filepath.Join(src, "stage", "v2"), []byte("version two\n"), 0o600)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/", chunker.Config{})

	refreshed := make(chan bool, 1000)
	opts := mount.Options{Refresh: 10 * time.Millisecond}
	mount.SetAfterRefresh(&opts, func(changed bool, err error) {
		if err == nil {
			refreshed <- changed
		}
	})
	tm := fstest.MountStore(t, store, opts)
	waitChange := func() {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case changed := <-refreshed:
				if changed {
					return
				}
			case <-deadline:
				t.Fatal("no refresh brought the change")
			}
		}
	}
	dir := tm.Path("d000")
	fstest.Sh(t, "ls", "-l", dir)
	if got := fstest.Sh(t, "cat", filepath.Join(dir, "f0003")); got != "0/3\n" {
		t.Fatalf("f0003 reads %q", got)
	}
	statAll := func(skip string) {
		t.Helper()
		for f := range 10 {
			if name := fmt.Sprintf("f%04d", f); name != skip {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	statAll("")
	before := tm.Stats().Fuse

	v2, err := tm.Vol.Tree.Lookup("/stage/v2")
	if err != nil {
		t.Fatal(err)
	}
	writeEntries(t, store, tree.Entry("/d000/f0003", v2))
	waitChange()
	after := tm.Stats().Fuse
	if n := after.InvalEntries - before.InvalEntries; n != 1 {
		t.Errorf("%d entries invalidated, want 1", n)
	}
	if n := after.InvalListings - before.InvalListings; n != 1 {
		t.Errorf("%d listings invalidated, want 1", n)
	}
	statAll("f0003")
	if n := tm.Stats().Fuse.Lookups - after.Lookups; n != 0 {
		t.Errorf("the unchanged files took %d lookups after the refresh, want 0", n)
	}
	if got := fstest.Sh(t, "stat", "-c", "%a %s", filepath.Join(dir, "f0003")); got != "600 12\n" {
		t.Errorf("changed file stats as %q", got)
	}
	if got := fstest.Sh(t, "cat", filepath.Join(dir, "f0003")); got != "version two\n" {
		t.Errorf("changed file reads %q", got)
	}
	if n := tm.Stats().Fuse.Lookups - after.Lookups; n != 1 {
		t.Errorf("%d lookups after the refresh, want 1 (the changed file)", n)
	}

	before = tm.Stats().Fuse
	writeEntries(t, store, tree.DeleteEntry("/d000/f0005"), tree.Entry("/d000/new", v2))
	waitChange()
	after = tm.Stats().Fuse
	if n := after.InvalDeletes - before.InvalDeletes; n != 1 {
		t.Errorf("%d deletes notified, want 1", n)
	}
	ls := fstest.Sh(t, "ls", dir)
	if strings.Contains(ls, "f0005") || !strings.Contains(ls, "new") || strings.Count(ls, "\n") != 10 {
		t.Errorf("listing after delete and add:\n%s", ls)
	}
	if _, err := os.Stat(filepath.Join(dir, "f0005")); !os.IsNotExist(err) {
		t.Errorf("deleted file: stat %v", err)
	}
	if got := fstest.Sh(t, "cat", filepath.Join(dir, "new")); got != "version two\n" {
		t.Errorf("added file reads %q", got)
	}
}

// TestForgottenNodesLeaveTheTable: the mount keeps a record per name the
// kernel holds, and no more: after a walk it holds one per entry walked,
// and once the kernel drops its caches (FORGET for every inode) only the
// root's is left. A walk afterwards is served as before.
func TestForgottenNodesLeaveTheTable(t *testing.T) {
	testsvc.RequireFUSE(t)
	testsvc.RequireRoot(t, "dropping the kernel's caches")
	const dirs, files = 4, 50
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, wideTree(t, dirs, files), "/", chunker.Config{})
	tm := fstest.MountStore(t, store, mount.Options{Refresh: -1})
	find := func() {
		t.Helper()
		if n := strings.Count(fstest.Sh(t, "find", tm.Dir, "-type", "f"), "\n"); n != dirs*files {
			t.Fatalf("find listed %d files, want %d", n, dirs*files)
		}
	}
	find()
	if n := tm.Stats().Fuse.NodesHeld; n < 1+dirs+dirs*files {
		t.Fatalf("after a walk the table holds %d nodes, want at least %d", n, 1+dirs+dirs*files)
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, "the kernel's forgets to empty the table", func() bool { return tm.Stats().Fuse.NodesHeld == 1 })
	find()
	if got := fstest.Sh(t, "cat", tm.Path("d002/f0049")); got != "2/49\n" {
		t.Errorf("after the forgets d002/f0049 reads %q", got)
	}
}
