package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/internal/testsvc"
)

var blockfsBin string

// TestMain builds the real binary once: mount tests run it as its own
// process, the way a compute node would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "blockfs-cmd-test")
	if err != nil {
		panic(err)
	}
	blockfsBin = filepath.Join(dir, "blockfs")
	gobin, err := exec.LookPath("go")
	if err != nil {
		panic("building blockfs for the tests needs the go command on PATH: " + err.Error())
	}
	if out, err := exec.Command(gobin, "build", "-o", blockfsBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := testsvc.RunShared(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// blockfs runs the command in-process and returns exit code, stdout, stderr.
func blockfs(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("BLOCKFS_STORE", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "Usage"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"import", "--store", "/tmp/x"}, "want SRC [DEST]"},
		{[]string{"import", "src"}, "no store given"},
		{[]string{"import", "--bogus", "a"}, "unknown flag: --bogus"},
		{[]string{"import", "--store", "s", "--chunk-min", "lots", "a"}, "not a size"},
		{[]string{"import", "--store", "s", "--chunk-min", "8MiB", "a"}, "chunk"},
		{[]string{"mount", "--store", "s"}, "want MOUNTPOINT"},
		{[]string{"mount", "--store", "s", "--pool-size", "12 parsecs", "/mnt"}, "not a size"},
		{[]string{"mount", "--store", "s", "--pool-size", "1KiB", "/mnt"}, "too small"},
		{[]string{"mount", "--store", "s", "--readdirplus", "sometimes", "/mnt"}, "want auto or always"},
		{[]string{"mount", "--store", "s", "--uid", "bob", "/mnt"}, "--uid \"bob\": want a numeric id"},
		{[]string{"mount", "--store", "s", "--umask", "999", "/mnt"}, "want octal permission bits"},
		{[]string{"mount", "--store", "s", "--file-mode", "0", "/mnt"}, "not a mode"},
		{[]string{"mount", "--store", "s", "-o", "uid=x", "/mnt"}, "want a numeric id"},
		{[]string{"mount", "--store", "s", "-o", "noatime", "/mnt"}, "want uid=, gid="},
		{[]string{"stats"}, "want MOUNTPOINT"},
		{[]string{"help", "nope"}, "unknown command"},
	} {
		code, _, stderr := blockfs(c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("blockfs %q: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && c.args != nil {
			t.Errorf("blockfs %q: error is not one line: %q", c.args, stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"help", "mount"}, {"mount", "--help"}, {"import", "-h"}} {
		code, out, _ := blockfs(args...)
		if code != 0 || !strings.Contains(out, "Usage") {
			t.Errorf("blockfs %q: exit %d, %q", args, code, out)
		}
	}
	_, out, _ := blockfs("help", "mount")
	for _, f := range []string{"--pool-size", "--readahead", "--allow-other", "--debug", "--store"} {
		if !strings.Contains(out, f) {
			t.Errorf("mount help lacks %s", f)
		}
	}
}

func TestImportAndReimport(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	code, out, stderr := blockfs("import", "--store", store, "../../testdata/sample")
	if code != 0 {
		t.Fatalf("import: %d %s", code, stderr)
	}
	if !strings.Contains(out, "imported /sample: 6 files, 6 dirs, 2 symlinks") {
		t.Errorf("summary: %q", out)
	}
	// BLOCKFS_STORE supplies the store; a re-import stores nothing new.
	t.Setenv("BLOCKFS_STORE", store)
	code, out, stderr = blockfs("import", "--json", "../../testdata/sample", "/sample")
	if code != 0 {
		t.Fatalf("re-import: %d %s", code, stderr)
	}
	var st struct {
		Files      int64    `json:"files"`
		Bytes      int64    `json:"bytes"`
		NewBlocks  int64    `json:"new_blocks"`
		NewBytes   int64    `json:"new_bytes"`
		DedupRatio *float64 `json:"dedup_ratio"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if st.Files != 6 || st.Bytes == 0 || st.NewBlocks != 0 || st.NewBytes != 0 || st.DedupRatio != nil {
		t.Errorf("re-import stored new data, or claims a ratio: %+v", st)
	}
	if _, out, _ = blockfs("import", "../../testdata/sample", "/sample"); !strings.Contains(out, "nothing new to store") {
		t.Errorf("summary of a re-import: %q", out)
	}
	// --delete mirrors the source: a path the source lacks goes.
	if code, _, stderr := blockfs("import", "../../testdata/sample/README.txt", "/sample/extra.txt"); code != 0 {
		t.Fatal(stderr)
	}
	if code, out, stderr := blockfs("import", "--delete", "../../testdata/sample", "/sample"); code != 0 || !strings.Contains(out, "1 deleted") {
		t.Errorf("import --delete: exit %d, %q %q", code, out, stderr)
	}
}

func TestImportErrors(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	code, _, stderr := blockfs("import", "--store", store, "/no/such/source")
	if code != 1 || !strings.Contains(stderr, "/no/such/source") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("missing source: exit %d, %q", code, stderr)
	}
	code, _, stderr = blockfs("mount", "--store", t.TempDir(), t.TempDir())
	if code != 1 || !strings.Contains(stderr, "not a blockfs store") {
		t.Errorf("mount of a non-store: exit %d, %q", code, stderr)
	}
	code, _, stderr = blockfs("mount", "--store", "/no/such/store", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "/no/such/store") {
		t.Errorf("mount of a missing store: exit %d, %q", code, stderr)
	}
	code, _, stderr = blockfs("mount", "--store", store, "/no/such/mountpoint")
	if code != 1 || !strings.Contains(stderr, "mountpoint") {
		t.Errorf("missing mountpoint: exit %d, %q", code, stderr)
	}
	code, _, stderr = blockfs("stats", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "not a blockfs mount") {
		t.Errorf("stats of a plain dir: exit %d, %q", code, stderr)
	}
}

// startMount runs `blockfs mount` as a process and returns once it says it
// is serving.
func startMount(t *testing.T, store, mnt string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(blockfsBin, append([]string{"mount", "--store", store, mnt}, extra...)...)
	startUntil(t, cmd, "serving")
	return cmd
}

// startUntil starts cmd and returns its stderr lines up to and including
// the first one containing ready (the rest is copied to the test's
// stderr). The process is stopped with SIGTERM when the test ends.
func startUntil(t *testing.T, cmd *exec.Cmd, ready string) []string {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stderr)
	var lines []string
	for {
		line, err := r.ReadString('\n')
		lines = append(lines, line)
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s did not start: %q %v", cmd.Args[1], lines, err)
		}
		if strings.Contains(line, ready) {
			break
		}
	}
	go func() { _, _ = r.WriteTo(os.Stderr) }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	})
	return lines
}

func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), " "+dir+" ")
}

func TestMountStatsUnmount(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	mnt := t.TempDir()
	cmd := startMount(t, store, mnt, "--pool-size", "64MiB", "--readahead", "2")

	want, _ := os.ReadFile("../../testdata/sample/reference/genome.fa")
	got, err := exec.Command("cat", filepath.Join(mnt, "sample/reference/genome.fa")).Output()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cat through the mount: %v", err)
	}

	// stats --json, from another process, has the documented fields.
	out, err := exec.Command(blockfsBin, "stats", "--json", mnt).Output()
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Pool map[string]any `json:"pool"`
		Fuse map[string]any `json:"fuse"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, f := range []string{"gets", "hits", "shared", "fetches", "fetch_bytes", "verify_failures", "errors", "busy", "evictions", "buffers", "buffers_in_use", "held_bytes", "waiters", "in_flight", "misses", "prefetch_wasted", "read_bytes"} {
		if v, ok := st.Pool[f].(float64); !ok || v != float64(int64(v)) {
			t.Errorf("pool.%s = %v", f, st.Pool[f])
		}
	}
	for _, f := range []string{"reads", "read_bytes", "lookups", "opens"} {
		if v, ok := st.Fuse[f].(float64); !ok || v == 0 {
			t.Errorf("fuse.%s = %v", f, st.Fuse[f])
		}
	}
	if st.Pool["max_bytes"].(float64) != 64<<20 {
		t.Errorf("pool size not applied: %v", st.Pool["max_bytes"])
	}
	human, err := exec.Command(blockfsBin, "stats", mnt).Output()
	if err != nil || !strings.Contains(string(human), "fetches") || !strings.Contains(string(human), "64 MiB") || !strings.Contains(string(human), "served from parts (1 fetched") {
		t.Errorf("stats: %v %s", err, human)
	}

	// --watch prints a line per interval until interrupted.
	watch := exec.Command(blockfsBin, "stats", "--watch", "50ms", mnt)
	wout, _ := watch.StdoutPipe()
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(wout)
	for i := 0; i < 2; i++ {
		if !sc.Scan() || !strings.Contains(sc.Text(), []string{"pool", "hit%"}[i]) { // the header
			t.Errorf("watch line %d: %q", i, sc.Text())
		}
	}
	watch.Process.Signal(syscall.SIGINT)
	if err := watch.Wait(); err != nil {
		t.Errorf("stats --watch after SIGINT: %v", err)
	}

	// A second mount on the same mountpoint is refused before anything starts.
	code, _, stderr := blockfs("mount", "--store", store, mnt)
	if code != 1 || !strings.Contains(stderr, "already mounted") {
		t.Errorf("second mount: exit %d, %q", code, stderr)
	}

	// SIGTERM: exit 0, nothing left mounted.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("mount exit after SIGTERM: %v", err)
	}
	if mounted(t, mnt) {
		t.Error("still mounted after SIGTERM")
	}
}

func TestExternalUnmount(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample/README.txt"); code != 0 {
		t.Fatal(stderr)
	}
	mnt := t.TempDir()
	cmd := startMount(t, store, mnt)
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("mount exit after umount: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mount process still running 30s after umount")
	}
}

// TestMountCacheDir: a mount with --cache-dir reports its cache, and a
// second process cannot take the same cache directory.
func TestMountCacheDir(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	cache := t.TempDir()
	mnt := t.TempDir()
	startMount(t, store, mnt, "--cache-dir", cache, "--cache-size", "64MiB")
	if _, err := exec.Command("cat", filepath.Join(mnt, "sample/models/weights.bin")).Output(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(blockfsBin, "stats", "--json", mnt).Output()
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Cache *struct {
			Misses   int64 `json:"misses"`
			MaxBytes int64 `json:"max_bytes"`
		} `json:"cache"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Cache == nil || st.Cache.Misses == 0 || st.Cache.MaxBytes != 64<<20 {
		t.Errorf("cache stats: %v %s", err, out)
	}
	code, _, stderr := blockfs("mount", "--store", store, "--cache-dir", cache, t.TempDir())
	if code != 1 || !strings.Contains(stderr, "in use") {
		t.Errorf("second owner of a cache dir: exit %d, %q", code, stderr)
	}
}

// TestVerifyCommand: verify finds a missing block and names its one file;
// unpacked (--pack-below 0), so a small file's block is its alone.
func TestVerifyCommand(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--pack-below", "0", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	code, out, stderr := blockfs("verify", "--deep", "--store", store)
	if code != 0 || !strings.Contains(out, "verified /: 6 files") || !strings.Contains(out, "present and intact") {
		t.Fatalf("verify of a healthy store: exit %d, %q %q", code, out, stderr)
	}
	// Remove the one block of a small file: exit 1, the block and its file named.
	data, _ := os.ReadFile("../../testdata/sample/models/config.json")
	h := blockstore.Sum(data).String()
	if err := os.Remove(filepath.Join(store, "blocks", h[:2], h)); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = blockfs("verify", "--json", "--store", store)
	var rep struct {
		Missing []struct {
			Paths []string `json:"paths"`
		} `json:"missing"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if code != 1 || len(rep.Missing) != 1 || len(rep.Missing[0].Paths) != 1 || rep.Missing[0].Paths[0] != "/sample/models/config.json" || !strings.Contains(stderr, "1 missing") {
		t.Errorf("verify with a block gone: exit %d, %s, %q", code, out, stderr)
	}
}
