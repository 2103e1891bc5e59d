package main

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

// importRandom imports n pseudo-random bytes as /d/f into a new directory
// store and returns the store.
func importRandom(t *testing.T, n int) string {
	t.Helper()
	src := t.TempDir()
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(src, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, src, "/d"); code != 0 {
		t.Fatal(stderr)
	}
	return store
}

// waitExit waits up to d for cmd to exit and returns its error, failing
// the test (after killing it) if it is still running.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration, what string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running %v later", what, d)
		return nil
	}
}

// TestFIFOBlockTimeoutAndSIGTERM: one block file of a directory store is a
// FIFO (a store read that would block in the kernel; the directory store
// now refuses it at once, and a store read that hangs regardless is timed
// out by the pool: see fs/mount's TestHungStoreReadBoundedByOneTimeout).
// cat of the file fails with EIO within the fetch timeout, and SIGTERM ends
// the mount within a bound while a process sits in the mount and another
// reads, leaving the mountpoint clean.
func TestFIFOBlockTimeoutAndSIGTERM(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := importRandom(t, 3<<20)
	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := vol.Tree.Lookup("/d/f")
	vol.Close()
	if err != nil {
		t.Fatal(err)
	}
	h := n.Blocks[0].Hash.String()
	block := filepath.Join(store, "blocks", h[:2], h)
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(block, 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	const timeout = 2 * time.Second
	cmd := startMount(t, store, mnt, "--fetch-timeout", timeout.String())

	start := time.Now()
	cat := exec.Command("cat", filepath.Join(mnt, "d/f"))
	var out strings.Builder
	cat.Stderr = &out
	if err := cat.Start(); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cat, timeout+3*time.Second, "cat of a file over a FIFO block"); err == nil || !strings.Contains(out.String(), "Input/output error") {
		t.Errorf("cat: %v %q, want EIO", err, out.String())
	}
	t.Logf("cat failed after %v", time.Since(start))

	// A process inside the mount and a read stuck on the FIFO again.
	sitter := exec.Command("sleep", "1000")
	sitter.Dir = mnt
	if err := sitter.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sitter.Process.Kill(); sitter.Wait() }()
	stuck := exec.Command("cat", filepath.Join(mnt, "d/f"))
	if err := stuck.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stuck.Process.Kill(); stuck.Wait() }()

	start = time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, cmd, stopGrace+5*time.Second, "mount after SIGTERM"); err != nil {
		t.Errorf("mount exit after SIGTERM: %v", err)
	}
	t.Logf("mount exited %v after SIGTERM", time.Since(start))
	if mounted(t, mnt) {
		syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Error("mountpoint still mounted after SIGTERM")
	}
}

// TestDeadMountHint: after a mount process is killed, mount and stats on
// its mountpoint say it is dead and how to clear it.
func TestDeadMountHint(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := importRandom(t, 1000)
	mnt := t.TempDir()
	cmd := startMount(t, store, mnt)
	cmd.Process.Kill()
	cmd.Wait()
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &sfs); err != syscall.ENOTCONN {
		t.Fatalf("statfs of a killed mount: %v, want ENOTCONN (a dead mount to test)", err)
	}
	for _, args := range [][]string{{"mount", "--store", store, mnt}, {"stats", mnt}} {
		code, _, stderr := blockfs(args...)
		if code != 1 || !strings.Contains(stderr, "dead mount") || !strings.Contains(stderr, "umount -l "+mnt) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s on a dead mount: exit %d, %q, want one line with the umount -l hint", args[0], code, stderr)
		}
	}
}

// TestMountBadRootAndNonEmpty: a store whose root does not decode fails
// the mount with exit 1 and a clear error, leaving nothing mounted; a
// non-empty mountpoint is refused without --allow-non-empty.
func TestMountBadRootAndNonEmpty(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := importRandom(t, 1000)
	mnt := t.TempDir()
	if err := os.WriteFile(filepath.Join(mnt, "hidden"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := blockfs("mount", "--store", store, mnt)
	if code != 1 || !strings.Contains(stderr, "not empty") || !strings.Contains(stderr, "--allow-non-empty") {
		t.Errorf("mount over a non-empty dir: exit %d, %q", code, stderr)
	}
	cmd := startMount(t, store, mnt, "--allow-non-empty")
	if _, err := os.Stat(filepath.Join(mnt, "d/f")); err != nil {
		t.Error(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := vol.Meta.MultiWrite([]objects.Entry{{Keys: [][]byte{[]byte("/")}, Value: []byte{0xff, 0xff}}}); err != nil {
		t.Fatal(err)
	}
	if err := vol.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	vol.Close()
	empty := t.TempDir()
	out, err := exec.Command(blockfsBin, "mount", "--store", store, empty).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "root") {
		t.Errorf("mount of a store with a bad root: %v %q, want exit 1 naming the root", err, out)
	}
	if mounted(t, empty) {
		syscall.Unmount(empty, syscall.MNT_DETACH)
		t.Error("bad root left a mount behind")
	}
}
