package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"blockfs/internal/testsvc"
)

// devFUSEForAll makes /dev/fuse 0666, as distributions ship it, for the
// test's length: a container's may be 0600, and fusermount3 opens it as
// the user. While it is closed, a mount must fail with the hint.
func devFUSEForAll(t *testing.T, store, mnt string) {
	fi, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o006 == 0o006 {
		return
	}
	out, err := asNobody(blockfsBin, "mount", "--store", store, mnt).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/dev/fuse is not readable and writable by this user") {
		t.Errorf("mount as nobody without access to /dev/fuse: %v %q", err, out)
	}
	if err := os.Chmod("/dev/fuse", 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod("/dev/fuse", fi.Mode().Perm()) })
}

// asNobody runs a command as the unprivileged user nobody.
func asNobody(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// TestNonRootMount: an unprivileged user mounts with --daemon (the kernel
// mount is done by the setuid fusermount3, go-fuse's fallback when it may
// not mount itself), reads, and unmounts with fusermount3 -u, as
// docs/operations.md describes.
func TestNonRootMount(t *testing.T) {
	testsvc.RequireFUSE(t)
	requireTools(t, "fusermount3")
	dir, err := os.MkdirTemp("", "blockfs-nonroot")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(blockfsBin), 0o755)
	store := filepath.Join(dir, "store")
	if code, _, stderr := blockfs("import", "-q", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	mnt := filepath.Join(dir, "mnt")
	logDir := filepath.Join(dir, "log")
	for _, d := range []string{mnt, logDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(d, 65534, 65534)
	}
	devFUSEForAll(t, store, mnt)
	logFile := filepath.Join(logDir, "mount.log")
	out, err := asNobody(blockfsBin, "mount", "--daemon", "--log-file", logFile, "--store", store, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("mount as nobody: %v %s", err, out)
	}
	defer syscall.Unmount(mnt, syscall.MNT_DETACH)
	got, err := asNobody("cat", filepath.Join(mnt, "sample/README.txt")).Output()
	want, _ := os.ReadFile("../../testdata/sample/README.txt")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read as nobody: %v", err)
	}
	info, _ := os.ReadFile("/proc/self/mountinfo")
	if !strings.Contains(string(info), " "+mnt+" ") || !strings.Contains(string(info), "user_id=65534") {
		t.Errorf("not a mount of user 65534:\n%s", info)
	}
	if out, err := asNobody("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u as nobody: %v %s", err, out)
	}
	testsvc.WaitFor(t, "the daemon to log its end", func() bool {
		b, _ := os.ReadFile(logFile)
		return bytes.Contains(b, []byte("msg=unmounted"))
	})
}
