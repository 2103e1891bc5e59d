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

// metaTree writes dirs directories of files empty files each under /data
// of a new store, as metadata directly (an import of 10,000 files takes
// long on a busy machine, and no file is read here), and returns it.
func metaTree(t *testing.T, dirs, files int) string {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store")
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
	return store
}

// countLines runs cmd and fails unless its output has want lines with
// marker (every line if marker is "").
func countLines(t *testing.T, want int, marker string, cmd ...string) {
	t.Helper()
	out := fstest.Sh(t, cmd[0], cmd[1:]...)
	n := strings.Count(out, "\n")
	if marker != "" {
		n = strings.Count(out, marker)
	}
	if n != want {
		t.Fatalf("%v listed %d files, want %d", cmd, n, want)
	}
}

// TestSecondFindMakesNoLookups: over a 10,000-file tree, the first find
// makes no LOOKUP per entry and gets names only past each listing's first
// entries (the kernel's adaptive READDIRPLUS: find stats nothing, so
// attributes would cost the kernel an inode per file for nothing), and the
// second is answered by the kernel alone: no LOOKUP, no READDIR. An `ls
// -lR` after it looks up the files of one directory, which drops the
// listings held as names, and gets the rest with attributes: no GETATTR
// or GETXATTR per file.
func TestSecondFindMakesNoLookups(t *testing.T) {
	testsvc.RequireFUSE(t)
	const dirs, files = 20, 500
	tm := fstest.MountStore(t, metaTree(t, dirs, files), mount.Options{Refresh: -1})

	before := tm.Stats().Fuse
	countLines(t, dirs*files, "", "find", tm.Dir, "-type", "f")
	first := tm.Stats().Fuse
	// The mountpoint's root and /data are the only names the kernel may
	// have to look up: the directories come with their parent's listing.
	if n := first.Lookups - before.Lookups; n > 2 {
		t.Errorf("first find made %d lookups, want at most 2", n)
	}
	if n, most := first.PlusEntries-before.PlusEntries, int64(2+dirs+dirs*mount.FirstPlusEntries); n > most {
		t.Errorf("first find got %d entries with attributes, want at most %d (names only past each listing's start)", n, most)
	}
	countLines(t, dirs*files, "", "find", tm.Dir, "-type", "f")
	second := tm.Stats().Fuse
	if n := second.Lookups - first.Lookups; n != 0 {
		t.Errorf("second find made %d lookups, want 0", n)
	}
	if n := second.Readdirs - first.Readdirs; n != 0 {
		t.Errorf("second find read %d listings, want 0 (the kernel keeps them)", n)
	}
	countLines(t, dirs*files, "-rw-r--r--", "ls", "-lR", tm.Dir)
	third := tm.Stats().Fuse
	if n := third.Lookups - second.Lookups; n > files {
		t.Errorf("ls -lR after find made %d lookups, want at most %d (one directory's)", n, files)
	}
	if n := third.RelistedWithAttrs - second.RelistedWithAttrs; n != dirs {
		t.Errorf("ls -lR after find dropped %d listings held as names, want %d", n, dirs)
	}
	// A dropped listing takes its directory's attributes with it (the
	// kernel's inode notification drops both): one GETATTR each.
	if n := third.Getattrs - second.Getattrs; n > dirs {
		t.Errorf("ls -lR made %d getattrs, want at most %d (attributes came with the entries)", n, dirs)
	}
	// ls -l probes each file for a SELinux label and an ACL; "not
	// supported" from the first file stops it for the whole mount.
	if n := third.Getxattrs - second.Getxattrs; n > 2 {
		t.Errorf("ls -lR made %d getxattrs, want at most 2 (one per name)", n)
	}
	countLines(t, dirs*files, "-rw-r--r--", "ls", "-lR", tm.Dir)
	if n := tm.Stats().Fuse.Lookups - third.Lookups; n != 0 {
		t.Errorf("second ls -lR made %d lookups, want 0", n)
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

// TestLsGetsAttributes: on a fresh mount, ls -lR gets every file's
// attributes with its listing (the adaptive READDIRPLUS goes on with
// attributes once ls stats the first entries): no LOOKUP or GETATTR per
// file. With PlusAlways even find gets them.
func TestLsGetsAttributes(t *testing.T) {
	testsvc.RequireFUSE(t)
	const dirs, files = 4, 1000
	store := metaTree(t, dirs, files)
	tm := fstest.MountStore(t, store, mount.Options{Refresh: -1})
	before := tm.Stats().Fuse
	countLines(t, dirs*files, "-rw-r--r--", "ls", "-lR", tm.Dir)
	after := tm.Stats().Fuse
	if n := after.Lookups - before.Lookups; n > 2 {
		t.Errorf("ls -lR made %d lookups, want at most 2", n)
	}
	if n := after.Getattrs - before.Getattrs; n > 2 {
		t.Errorf("ls -lR made %d getattrs, want at most 2", n)
	}
	if n := after.PlusEntries - before.PlusEntries; n < dirs*files {
		t.Errorf("ls -lR got %d entries with attributes, want at least %d", n, dirs*files)
	}

	always := fstest.MountStore(t, store, mount.Options{Refresh: -1, PlusAlways: true})
	countLines(t, dirs*files, "", "find", always.Dir, "-type", "f")
	if n := always.Stats().Fuse.PlusEntries; n < dirs*files {
		t.Errorf("find with PlusAlways got %d entries with attributes, want at least %d", n, dirs*files)
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
