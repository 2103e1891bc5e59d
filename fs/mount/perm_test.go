package mount_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/internal/testsvc"
)

// asNobody runs a command as uid/gid 65534, as another user of an
// --allow-other mount would, and returns its combined output and error.
func asNobody(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestZeroModesServedAsStored: a 0000 file and a 0000 directory are served
// as 0000, so another user of an --allow-other mount is refused, while a
// 0644 file next to them stays readable.
func TestZeroModesServedAsStored(t *testing.T) {
	testsvc.RequireFUSE(t)
	testsvc.RequireRoot(t, "running a reader as another user needs root")
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "public"), []byte("public\n"), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "secret"), []byte("secret\n"), 0o600)
	fstest.WriteFile(t, filepath.Join(src, "locked/inner"), []byte("inner\n"), 0o644)
	for _, p := range []string{"secret", "locked"} {
		if err := os.Chmod(filepath.Join(src, p), 0); err != nil {
			t.Fatal(err)
		}
	}
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/p", chunker.Config{})
	tm := fstest.MountStore(t, store, mount.Options{AllowOther: true})
	// The way to the mountpoint must be open to the other user.
	if err := os.Chmod(filepath.Dir(tm.Dir), 0o755); err != nil {
		t.Fatal(err)
	}

	if out, err := asNobody("cat", tm.Path("p/public")); err != nil || out != "public\n" {
		t.Errorf("nobody cat public: %v %q", err, out)
	}
	if out, err := asNobody("cat", tm.Path("p/secret")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nobody cat of a 0000 file: %v %q, want permission denied", err, out)
	}
	if out, err := asNobody("ls", tm.Path("p/locked")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nobody ls of a 0000 directory: %v %q, want permission denied", err, out)
	}
	if out, err := asNobody("cat", tm.Path("p/locked/inner")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nobody cat through a 0000 directory: %v %q, want permission denied", err, out)
	}
	got := fstest.Sh(t, "stat", "-c", "%04a %A", tm.Path("p/secret"), tm.Path("p/locked"), tm.Path("p/public"))
	if want := "0000 ----------\n0000 d---------\n0644 -rw-r--r--\n"; got != want {
		t.Errorf("stat modes:\n%s\nwant\n%s", got, want)
	}
}
