package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/internal/testsvc"
)

// TestRmThenRollback: rm refuses / and a directory without -r, changing
// nothing; --dry-run lists exactly what would go and leaves meta/head as it
// was; rm -r removes the subtree (gone from ls); rollback to the snapshot
// before brings every file back byte for byte in a real mount.
func TestRmThenRollback(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep"), "keep\n")
	writeFile(t, filepath.Join(src, "sub/a"), strings.Repeat("a", 300<<10))
	writeFile(t, filepath.Join(src, "sub/deeper/b"), "b\n")
	mustRun(t, "import", "--store", store, src, "/d")
	before := readHead(t, store)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"/"}, 2, "refusing to remove /"},
		{[]string{"/d/sub"}, 1, "is a directory (use -r"},
		{[]string{"/d/keep", "/d/nope"}, 1, "no such file"},
	} {
		code, _, stderr := blockfs(append([]string{"rm", "--store", store}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("rm %v: exit %d %q; want %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
	out := mustRun(t, "rm", "-r", "--dry-run", "--store", store, "/d/sub")
	want := "would remove /d/sub/deeper/b\nwould remove /d/sub/deeper\nwould remove /d/sub/a\nwould remove /d/sub\n" +
		"would remove 4 entries: 2 files (300 KiB), 2 directories, 0 symlinks\n"
	if out != want {
		t.Errorf("rm --dry-run:\n%s\nwant\n%s", out, want)
	}
	if readHead(t, store) != before {
		t.Fatal("a refused rm or a dry run changed meta/head")
	}
	mustRun(t, "rm", "-r", "--store", store, "/d/sub")
	if out := mustRun(t, "ls", "--store", store, "/d"); out != "keep\n" {
		t.Fatalf("ls after rm: %q", out)
	}
	if out := mustRun(t, "rollback", "--store", store, "1"); !strings.Contains(out, "rolled back from snapshot 2 to snapshot 1") {
		t.Fatalf("rollback: %q", out)
	}
	mnt := t.TempDir()
	cmd := startMount(t, store, mnt)
	if out, err := exec.Command("diff", "-r", src, filepath.Join(mnt, "d")).CombinedOutput(); err != nil {
		t.Errorf("after rm and rollback: %v %s", err, out)
	}
	exec.Command("umount", mnt).Run()
	cmd.Wait()
}
