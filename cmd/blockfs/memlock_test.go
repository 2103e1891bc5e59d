package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"blockfs/internal/testsvc"

	"golang.org/x/sys/unix"
)

// TestServeWithoutMemlock: a server run as an unprivileged user, whose
// RLIMIT_MEMLOCK lets it lock only a couple of blocks, maps what it can,
// copies the rest (blockstore.MapFile's fallback), and every byte a mount
// reads through it is right.
func TestServeWithoutMemlock(t *testing.T) {
	testsvc.RequireFUSE(t)
	// Everything the unprivileged server reads must be reachable by it.
	dir, err := os.MkdirTemp("", "blockfs-memlock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(blockfsBin), 0o755)
	src := filepath.Join(dir, "data.bin")
	data := make([]byte, 12<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	if code, _, stderr := blockfs("import", "--store", store, src); code != 0 {
		t.Fatal(stderr)
	}

	// The soft limit is inherited across fork and setuid; as root this
	// process ignores it (CAP_IPC_LOCK), the server will not.
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 2 << 20, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	cmd := serveCmd("--store", store)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	url := func() string {
		defer unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old) // once the server has forked
		return startServeCmd(t, cmd)
	}()

	mnt := t.TempDir()
	startMount(t, url, mnt)
	if out, err := exec.Command("cmp", src, filepath.Join(mnt, "data.bin")).CombinedOutput(); err != nil {
		t.Fatalf("cmp through a server short of lockable memory: %v %s", err, out)
	}
	pool, _ := serverStats(t, url)
	if pool.Mapped < 1 || pool.Mapped >= pool.Fetches || pool.Errors != 0 {
		t.Fatalf("want some blocks mapped, the rest copied, no errors: %+v", pool)
	}
	t.Logf("server pool: %d fetches, %d mapped", pool.Fetches, pool.Mapped)
}
