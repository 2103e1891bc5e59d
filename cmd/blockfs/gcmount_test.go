package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"blockfs/fs/gc"
	"blockfs/internal/testsvc"
)

// liveMountLeases counts the mount leases in a directory store's meta/gc
// ref that the collector still counts as live (expiry plus the skew
// the test sets, 1ms).
func liveMountLeases(t *testing.T, store string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(store, "blocks", "refs", "meta", "gc"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var st gc.State
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("%s: %v", gc.StateRef, err)
	}
	n := 0
	for _, l := range st.Leases {
		if l.Kind == gc.KindMount && time.Now().Before(l.Expires.Add(time.Millisecond)) {
			n++
		}
	}
	return n
}

// TestMountAtSurvivesGC: a real `blockfs mount --at old` process keeps
// reading every byte of v1 while the tag old is deleted and gc condemns
// and sweeps (the mount's lease names v1's snapshot); once the mount is
// gone (SIGTERM: it releases its lease; SIGKILL: the lease expires, 2s
// TTL) two more gc runs free v1's blocks. The mount's block pool (1 MiB)
// is smaller than v1 (3 MiB in 64 KiB blocks), and v1 is read in full only after the
// sweep, so the reads fetch blocks from the store after gc ran.
func TestMountAtSurvivesGC(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) { testMountAtSurvivesGC(t, sig) })
	}
}

func testMountAtSurvivesGC(t *testing.T, stop syscall.Signal) {
	testsvc.RequireFUSE(t)
	t.Setenv("BLOCKFS_LEASE_TTL", "2s") // for the mount process and the in-process gc
	t.Setenv("BLOCKFS_CLOCK_SKEW", "1ms")
	dir := t.TempDir()
	store, src := filepath.Join(dir, "store"), filepath.Join(dir, "src")
	names := []string{"a", "b"}
	const size = 1536 << 10
	v1 := map[string][]byte{}
	for i, n := range names {
		randomFile(t, filepath.Join(src, n), uint64(100+i), size)
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		v1[n] = b
	}
	imp := []string{"import", "--store", store, "--fixed", "--chunk-avg", "64KiB", src, "/d"}
	mustRun(t, imp...)
	mustRun(t, "tag", "--store", store, "old")
	for i, n := range names {
		randomFile(t, filepath.Join(src, n), uint64(200+i), size)
	}
	mustRun(t, imp...)
	withV1 := blockBytes(t, store)

	mnt := t.TempDir()
	m := startMount(t, store, mnt, "--at", "old", "--pool-size", "1MiB")
	defer func() {
		if m.ProcessState == nil {
			unmountAndWait(t, m, mnt)
		}
	}()
	head := make([]byte, 4096)
	f, err := os.Open(filepath.Join(mnt, "d", "a"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(head, 0)
	f.Close()
	if err != nil || !bytes.Equal(head, v1["a"][:4096]) {
		t.Fatalf("mount --at old does not serve v1 of /d/a: %v", err)
	}
	if n := liveMountLeases(t, store); n != 1 {
		t.Fatalf("%d live mount leases in %s, want the mount's", n, gc.StateRef)
	}

	mustRun(t, "tag", "--store", store, "--delete", "old")
	gcArgs := []string{"--store", store, "--keep-last", "1", "--grace", "0"}
	for i := range 2 {
		r := gcJSON(t, gcArgs...)
		t.Logf("gc %d with the mount: %+v", i, r)
	}
	if n := blockBytes(t, store); n < withV1-64<<10 {
		t.Fatalf("gc with the mount --at old live freed %d of %d bytes of blocks: v1 is %d bytes", withV1-n, withV1, 2*size)
	}
	for _, n := range names {
		got, err := os.ReadFile(filepath.Join(mnt, "d", n))
		if err != nil || !bytes.Equal(got, v1[n]) {
			t.Fatalf("after gc the mount reads /d/%s: %d bytes, equal %v, %v", n, len(got), bytes.Equal(got, v1[n]), err)
		}
	}

	if stop == syscall.SIGTERM {
		unmountAndWait(t, m, mnt)
	} else {
		m.Process.Kill()
		m.Wait()
		// The dead process's FUSE connection: detach it lazily.
		exec.Command("umount", "-l", mnt).Run()
		testsvc.WaitFor(t, "the unmount", func() bool { return !mounted(t, mnt) })
	}
	testsvc.WaitFor(t, "the mount's lease to be released or expire", func() bool { return liveMountLeases(t, store) == 0 })
	var freed int64
	for i := range 2 {
		r := gcJSON(t, gcArgs...)
		t.Logf("gc %d after the mount: %+v", i, r)
		freed += r.Freed.Bytes
	}
	if freed < 2*size {
		t.Fatalf("gc after the mount's lease ended freed %d bytes, want at least v1's %d", freed, 2*size)
	}
	// What stays beyond v2's data is metadata and the collector's own
	// condemned set: a few KiB.
	if n := blockBytes(t, store); n > withV1-2*size+64<<10 {
		t.Fatalf("store holds %d bytes of blocks after gc, %d before: v1's %d not freed", n, withV1, 2*size)
	}
	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 0 {
		t.Fatalf("verify --deep: %s %s", out, stderr)
	}
}
