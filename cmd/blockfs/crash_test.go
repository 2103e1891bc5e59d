package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockfs/fs/volume"
)

// TestRollbackAndTagCrash: `blockfs rollback` and `blockfs tag` killed
// (SIGKILL) at random points of their run, 24 trials: the store always
// opens and verifies, and its tree is exactly one of the two snapshots,
// never a mix; tags are either there or not.
func TestRollbackAndTagCrash(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "one\n")
	mustRun(t, "import", "--store", store, src, "/d")
	writeFile(t, filepath.Join(src, "a"), "two\n")
	writeFile(t, filepath.Join(src, "b"), "two\n")
	mustRun(t, "import", "--store", store, src, "/d")
	listing := func() string { return mustRun(t, "ls", "-lR", "--store", store, "/d") }
	states := map[string]bool{listing(): true}
	mustRun(t, "rollback", "--store", store, "1")
	states[listing()] = true
	if len(states) != 2 {
		t.Fatal("the two snapshots list the same")
	}
	// How long a run of the binary takes, so that kills land anywhere in it.
	start := time.Now()
	if out, err := exec.Command(blockfsBin, "rollback", "--store", store, "2").CombinedOutput(); err != nil {
		t.Fatalf("rollback: %v %s", err, out)
	}
	span := time.Since(start)

	killed, tmp := 0, t.TempDir()
	for i := range 24 {
		target := []string{"1", "2"}[i%2]
		args := []string{"rollback", "--store", store, target}
		if i%3 == 0 {
			args = []string{"tag", "--store", store, "t" + target + "x" + strings.Repeat("i", i)}
		}
		cmd := exec.Command(blockfsBin, args...)
		// A rollback counts its changes in temporary metadata logs; a
		// killed one leaves its log behind, for the next process in the
		// same TMPDIR to remove (and say so), not other tests' /tmp.
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(time.Duration(rand.Int64N(int64(span)+1)), func() { cmd.Process.Kill() })
		err := cmd.Wait()
		timer.Stop()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		} else if err != nil {
			t.Fatalf("trial %d: %v: %v", i, args, err)
		}
		if got := listing(); !states[got] {
			t.Fatalf("trial %d: tree is neither snapshot:\n%s", i, got)
		}
		if code, out, stderr := blockfs("verify", "--store", store); code != 0 {
			t.Fatalf("trial %d: verify: %s %s", i, out, stderr)
		}
		mustRun(t, "log", "--store", store)
	}
	t.Logf("%d of 24 runs killed before they finished (a run takes %v)", killed, span)
	if killed == 0 {
		t.Error("no run was killed: the trials tested nothing")
	}
}

// TestCompactCrash: `blockfs compact` killed (SIGKILL) at random points of
// its run, 24 trials, on a store of 30 imports (after each compaction that
// finished, a rollback brings the 30 segments back): the store always
// opens and verifies and lists exactly the tree it had, and the log is
// readable.
func TestCompactCrash(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	for i := range 30 {
		writeFile(t, filepath.Join(src, "f"+strconv.Itoa(i)), strings.Repeat("x", i)+"\n")
		mustRun(t, "import", "--store", store, src, "/d")
	}
	listing := func() string { return mustRun(t, "ls", "-lR", "--store", store, "/") }
	want := listing()
	full := currentSnapshot(t, store)
	if full.Segments != 30 {
		t.Fatalf("%d segments after 30 imports", full.Segments)
	}
	start := time.Now()
	mustRun(t, "compact", "--store", store)
	span := time.Since(start)

	killed := 0
	for i := range 24 {
		if cur := currentSnapshot(t, store); cur.Segments < 30 {
			mustRun(t, "rollback", "--store", store, strconv.FormatUint(full.Generation, 10))
		}
		cmd := exec.Command(blockfsBin, "compact", "--store", store)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(time.Duration(rand.Int64N(int64(span)+1)), func() { cmd.Process.Kill() })
		err := cmd.Wait()
		timer.Stop()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		} else if err != nil {
			t.Fatalf("trial %d: compact: %v", i, err)
		}
		if got := listing(); got != want {
			t.Fatalf("trial %d: tree changed:\n%s\nwant\n%s", i, got, want)
		}
		if code, out, stderr := blockfs("verify", "--store", store); code != 0 {
			t.Fatalf("trial %d: verify: %s %s", i, out, stderr)
		}
		mustRun(t, "log", "--store", store)
	}
	t.Logf("%d of 24 runs killed before they finished (a run takes %v)", killed, span)
	if killed == 0 {
		t.Error("no run was killed: the trials tested nothing")
	}
}

// currentSnapshot is the store's current snapshot, from log --json.
func currentSnapshot(t *testing.T, store string) volume.Snapshot {
	t.Helper()
	var out struct{ Snapshots []volume.Snapshot }
	if err := json.Unmarshal([]byte(mustRun(t, "log", "--json", "--store", store)), &out); err != nil {
		t.Fatal(err)
	}
	return out.Snapshots[0]
}
