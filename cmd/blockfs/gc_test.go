package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockfs/fs/gc"
	"blockfs/internal/testsvc"
)

// randomFile writes n random bytes (seeded) to p: content no other file shares.
func randomFile(t *testing.T, p string, seed uint64, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// gcJSON runs blockfs gc --json with args and decodes its report.
func gcJSON(t *testing.T, args ...string) gc.Report {
	t.Helper()
	out := mustRun(t, append([]string{"gc", "--json"}, args...)...)
	var r gc.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("gc --json: %v: %s", err, out)
	}
	return r
}

// blockBytes sums the sizes of the block files of a directory store.
func blockBytes(t *testing.T, store string) int64 {
	t.Helper()
	var n int64
	files, _ := filepath.Glob(filepath.Join(store, "blocks", "[0-9a-f][0-9a-f]", "*"))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestGCThroughServe: a gc through `blockfs serve` deletes through the
// server with its token (the blocks of a removed file leave the store
// behind the server, the rest verifies deep), and without the token fails
// with an error that says the token is what is missing, deleting nothing.
func TestGCThroughServe(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	randomFile(t, filepath.Join(dir, "src", "a"), 1, 200<<10)
	randomFile(t, filepath.Join(dir, "src", "b"), 2, 200<<10)
	mustRun(t, "import", "--store", store, filepath.Join(dir, "src"), "/d")
	mustRun(t, "rm", "--store", store, "/d/b")
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("sekrit\n"), 0o600)
	_, url := startServe(t, os.Environ(), "--store", store, "--token-file", tok)

	t.Setenv("BLOCKFS_TOKEN", "")
	before := blockBytes(t, store)
	code, _, stderr := blockfs("gc", "--store", url, "--grace", "0", "--keep-last", "1")
	t.Logf("gc without the token: %s", stderr)
	if code != 1 || !strings.Contains(stderr, "--store-token-file") {
		t.Errorf("gc through serve without the token: exit %d, %q; want 1 and an error saying how to give the token", code, stderr)
	}
	if n := blockBytes(t, store); n != before {
		t.Errorf("the refused gc changed the store: %d bytes of blocks, %d before", n, before)
	}
	args := []string{"--store", url, "--store-token-file", tok, "--grace", "0", "--keep-last", "1"}
	if r := gcJSON(t, args...); r.Condemned.Blocks == 0 {
		t.Fatalf("first gc through serve condemned nothing: %+v", r)
	}
	r := gcJSON(t, args...)
	if r.Freed.Blocks == 0 || r.Freed.Bytes < 200<<10 {
		t.Fatalf("second gc through serve freed %+v, want at least b's 200 KiB", r.Freed)
	}
	// b's 200 KiB left the store behind the server (the collector's own
	// condemned sets, a few hundred bytes, came and went).
	if n := blockBytes(t, store); n > before-190<<10 {
		t.Errorf("store behind the server: %d bytes of blocks, %d before the gc freed %d", n, before, r.Freed.Bytes)
	}
	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 0 {
		t.Fatalf("verify --deep after gc through serve: %s %s", out, stderr)
	}
}

// TestGCCrash: `blockfs gc` killed (SIGKILL) at a random time within twice
// its run's length, 18 of 24 trials (every fourth runs uncut), each after an import and an rm that make new garbage: after
// every kill the store verifies deep (and, every 6th trial, mounts and
// reads right); afterwards uninterrupted runs finish the job: none of the
// removed files' bytes stay (every removed file is 64 KiB of random
// bytes, more than all the unreachable metadata left).
func TestGCCrash(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	keep := filepath.Join(dir, "keep")
	randomFile(t, filepath.Join(keep, "k"), 7, 300<<10)
	mustRun(t, "import", "--store", store, keep, "/keep")
	// Dead sweeps and leases expire fast, so that later runs take over.
	t.Setenv("BLOCKFS_LEASE_TTL", "1s")
	t.Setenv("BLOCKFS_CLOCK_SKEW", "1ms")
	garbage := func(i int) {
		src := filepath.Join(dir, "g", strings.Repeat("x", i%3+1))
		for j := range 8 {
			randomFile(t, filepath.Join(src, string(rune('a'+j))), uint64(1000*i+j), 64<<10)
		}
		mustRun(t, "import", "--store", store, src, "/g")
		mustRun(t, "rm", "-r", "--store", store, "/g")
	}
	gcArgs := []string{"gc", "--store", store, "--grace", "0", "--keep-last", "1"}
	garbage(0)
	start := time.Now()
	if out, err := exec.Command(blockfsBin, gcArgs...).CombinedOutput(); err != nil {
		t.Fatalf("gc: %v %s", err, out)
	}
	span := time.Since(start)
	killed := 0
	const trials = 24
	for i := range trials {
		garbage(i + 1)
		cmd := exec.Command(blockfsBin, gcArgs...)
		cmd.Env = os.Environ()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Every fourth run goes uncut: it must finish, and it keeps span
		// (the longest uncut run) in step with the work a run has, which
		// grows with the garbage; the others are killed within 2*span.
		uncut := i%4 == 3
		began := time.Now()
		timer := time.AfterFunc(time.Duration(rand.Int64N(2*int64(span)+1)), func() {
			if !uncut {
				cmd.Process.Kill()
			}
		})
		err := cmd.Wait()
		timer.Stop()
		if uncut {
			span = max(span, time.Since(began))
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		} else if err != nil {
			t.Fatalf("trial %d: gc: %v", i, err)
		}
		if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 0 {
			t.Fatalf("trial %d: verify --deep after a killed gc: %s %s", i, out, stderr)
		}
		if i%6 == 5 {
			mnt := t.TempDir()
			m := startMount(t, store, mnt)
			got, err := os.ReadFile(filepath.Join(mnt, "keep", "k"))
			want, _ := os.ReadFile(filepath.Join(keep, "k"))
			if err != nil || string(got) != string(want) {
				t.Fatalf("trial %d: mounted /keep/k: %d bytes, %v", i, len(got), err)
			}
			unmountAndWait(t, m, mnt)
		}
	}
	t.Logf("%d of %d runs killed before they finished (a run takes %v)", killed, trials, span)
	if killed == 0 {
		t.Errorf("%d of %d runs killed: the trials tested nothing", killed, trials)
	}
	// Later runs finish the job, once a killed sweeper's lease expired.
	var last gc.Report
	testsvc.WaitFor(t, "gc to free every removed file", func() bool {
		last = gcJSON(t, gcArgs[1:]...)
		return last.Deferred == "" && last.Unreachable.Bytes < 64<<10
	})
	t.Logf("final run: %+v", last)
	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 0 {
		t.Fatalf("verify --deep at the end: %s %s", out, stderr)
	}
}

// TestGCTempFilesAfterGrace: loose temp files of interrupted writes (in
// the store's tmp/ outside any session: their writer is unknown, an older
// binary or a filesystem without working locks) are kept by a gc while
// younger than --grace and removed once older; their mtimes are set back
// rather than waited for. (A dead writer's session, its lock free, is
// removed at the next open of the store whatever its age: nothing can
// finish those writes.)
func TestGCTempFilesAfterGrace(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	randomFile(t, filepath.Join(dir, "first", "f"), 3, 100<<10)
	mustRun(t, "import", "--store", store, filepath.Join(dir, "first"), "/first")
	var temps []string
	for i := range 3 {
		p := filepath.Join(store, "blocks", "tmp", ".tmp-"+strings.Repeat("7", i+1))
		randomFile(t, p, uint64(50+i), 10<<10) // a block write cut short
		temps = append(temps, p)
	}
	age := func(d time.Duration) {
		for _, p := range temps {
			when := time.Now().Add(-d)
			if err := os.Chtimes(p, when, when); err != nil {
				t.Fatal(err)
			}
		}
	}
	present := func() int {
		n := 0
		for _, p := range temps {
			if _, err := os.Lstat(p); err == nil {
				n++
			}
		}
		return n
	}
	age(5 * time.Minute)
	if r := gcJSON(t, "--store", store, "--grace", "10m"); r.Temps.Blocks != 0 || present() != len(temps) {
		t.Fatalf("gc --grace 10m removed %d of %d temp files 5 minutes old", r.Temps.Blocks, len(temps))
	}
	age(20 * time.Minute)
	if r := gcJSON(t, "--store", store, "--grace", "10m", "--dry-run"); r.Temps.Blocks != int64(len(temps)) || present() != len(temps) {
		t.Fatalf("gc --dry-run counted %d temp files and left %d of %d", r.Temps.Blocks, present(), len(temps))
	}
	r := gcJSON(t, "--store", store, "--grace", "10m")
	if r.Temps.Blocks != int64(len(temps)) || r.Temps.Bytes != 3*10<<10 || present() != 0 {
		t.Fatalf("gc --grace 10m removed %+v of %d temp files 20 minutes old; %d left", r.Temps, len(temps), present())
	}
	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 0 {
		t.Fatalf("verify --deep: %s %s", out, stderr)
	}
}

// unmountAndWait stops a mount process started by startMount and waits
// until the kernel no longer lists the mount.
func unmountAndWait(t *testing.T, m *exec.Cmd, mnt string) {
	t.Helper()
	m.Process.Signal(syscall.SIGTERM)
	m.Wait()
	testsvc.WaitFor(t, "the unmount", func() bool { return !mounted(t, mnt) })
}
