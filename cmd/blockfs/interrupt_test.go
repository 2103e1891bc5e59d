package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// countBlocks counts the block files of a directory store.
func countBlocks(t *testing.T, store string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(store, "blocks", "[0-9a-f][0-9a-f]", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

type importReport struct {
	Blocks     int64 `json:"blocks"`
	NewBlocks  int64 `json:"new_blocks"`
	MetaBlocks int64 `json:"meta_blocks"`
	Committed  int64 `json:"committed"`
}

// TestImportInterrupts sends SIGINT or SIGTERM to real imports at random
// moments. Every trial: the exit status is 0 (it finished first) or
// 130/143 with a line saying what was kept; every visible file is whole;
// no temp file survives; and a rerun stores exactly the blocks the store
// lacked (counted in the store), then the tree verifies.
func TestImportInterrupts(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	want := map[string][]byte{}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 48 {
		rel := fmt.Sprintf("d%d/f%02d", i%6, i)
		data := make([]byte, 128<<10+rnd.IntN(256<<10))
		for j := range data {
			data[j] = byte(rnd.Uint32())
		}
		want["/x/"+rel] = data
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if code, _, stderr := blockfs("import", "--quiet", "--store", ref, src, "/x"); code != 0 {
		t.Fatal(stderr)
	}
	total := countBlocks(t, ref) // data blocks and metadata blocks of one whole import

	deadline := time.Now().Add(60 * time.Second)
	interrupted, early := 0, 0
	trials := 0
	for ; trials < 24 && time.Now().Before(deadline); trials++ {
		store := filepath.Join(t.TempDir(), "store")
		sig := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}[trials%2]
		cmd := exec.Command(blockfsBin, "import", "--quiet", "--chunk-min", "16KiB", "--chunk-avg", "64KiB", "--chunk-max", "256KiB", "--store", store, src, "/x")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The random moment: anywhere from start-up to the end of the import.
		timer := time.AfterFunc(time.Duration(rnd.IntN(120))*time.Millisecond, func() { cmd.Process.Signal(sig) })
		err := cmd.Wait()
		timer.Stop()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		_, statErr := os.Stat(store)
		switch {
		case code == 0:
		case code == -1 && ee.Sys().(syscall.WaitStatus).Signal() == sig && errors.Is(statErr, os.ErrNotExist):
			// The signal came before the handler was installed (at
			// process start, before any command runs): the default action.
			early++
			continue
		case code == 128+int(sig) && strings.Contains(stderr.String(), "interrupted by") && strings.Contains(stderr.String(), "whole files"):
			interrupted++
		default:
			t.Fatalf("trial %d (%v): exit %d (%v), %s", trials, sig, code, err, stderr.String())
		}
		if left, _ := filepath.Glob(filepath.Join(store, "blocks", "tmp", "*", "*")); len(left) > 0 {
			t.Errorf("trial %d: temp files survive: %q", trials, left)
		}
		visible := checkWhole(t, store, want)
		if m := keptRe.FindStringSubmatch(stderr.String()); m != nil && m[1] != fmt.Sprint(visible) {
			t.Errorf("trial %d: says it kept %s files, the store shows %d", trials, m[1], visible)
		}

		before := countBlocks(t, store)
		out := runJSON(t, "import", "--quiet", "--json", "--chunk-min", "16KiB", "--chunk-avg", "64KiB", "--chunk-max", "256KiB", "--store", store, src, "/x")
		after := countBlocks(t, store)
		// The store gains the data blocks it lacked and the rerun's metadata.
		if int(out.NewBlocks+out.MetaBlocks) != after-before {
			t.Errorf("trial %d: rerun says %d new blocks and %d metadata blocks, the store gained %d", trials, out.NewBlocks, out.MetaBlocks, after-before)
		}
		if code != 0 && out.NewBlocks == 0 && before < total {
			t.Errorf("trial %d: rerun stored nothing although the store lacked blocks", trials)
		}
		if code, o, e := blockfs("verify", "--deep", "--store", store); code != 0 || !strings.Contains(o, "48 files") {
			t.Errorf("trial %d: verify after the rerun: %d %s %s", trials, code, o, e)
		}
	}
	t.Logf("%d trials, %d interrupted mid-import, %d killed before blockfs started", trials, interrupted, early)
	if trials < 20 || interrupted < trials/4 {
		t.Errorf("%d trials, %d interrupted: too few to show anything", trials, interrupted)
	}
}

func runJSON(t *testing.T, args ...string) importReport {
	t.Helper()
	code, out, stderr := blockfs(args...)
	if code != 0 {
		t.Fatalf("blockfs %q: exit %d %s", args, code, stderr)
	}
	var r importReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return r
}

var keptRe = regexp.MustCompile(`kept (\d+) whole files`)

// checkWhole opens the store fresh: every file it shows is whole. It
// returns how many it shows.
func checkWhole(t *testing.T, store string, want map[string][]byte) int {
	t.Helper()
	if _, err := os.Stat(store); errors.Is(err, os.ErrNotExist) {
		return 0 // interrupted before the store was made
	}
	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		if strings.Contains(err.Error(), "not a blockfs store") {
			return 0
		}
		t.Fatal(err)
	}
	defer vol.Close()
	files := 0
	err = vol.Tree.Walk("/", func(p string, n *tree.Node) error {
		if n.Kind == tree.KindFile {
			files++
			if !bytes.Equal(readVolumeFile(t, vol, p), want[p]) {
				t.Errorf("%s is visible but not whole", p)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, tree.ErrNotExist) {
		t.Fatal(err)
	}
	return files
}

// TestImportFullDisk: a real import onto a small tmpfs that fills exits 1
// with the reason on one line, leaves no temp file and only whole files; a
// rerun once there is room stores only what is missing and verifies.
func TestImportFullDisk(t *testing.T) {
	testsvc.RequireRoot(t, "mounting a tmpfs needs root")
	src := filepath.Join(t.TempDir(), "src")
	want := map[string][]byte{}
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range 30 {
		rel := fmt.Sprintf("f%02d", i)
		data := make([]byte, 400<<10)
		for j := range data {
			data[j] = byte(rnd.Uint32())
		}
		want["/x/"+rel] = data
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer func() {
		if out, err := exec.Command("umount", disk).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	}()
	store := filepath.Join(disk, "store")
	cmd := exec.Command(blockfsBin, "import", "--quiet", "--store", store, src, "/x")
	// Its own TMPDIR: the one line checked below must not be joined by the
	// notice of stale metadata directories other tests' killed processes
	// left in the shared /tmp (which the import rightly removes).
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "no space left on device") || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("import onto a full disk: %v, %s", err, out)
	}
	if left, _ := filepath.Glob(filepath.Join(store, "blocks", "tmp", "*", "*")); len(left) > 0 {
		t.Errorf("temp files survive: %q", left)
	}
	kept := checkWhole(t, store, want)
	t.Logf("%d of %d files committed before the disk filled", kept, len(want))

	if out, err := exec.Command("mount", "-o", "remount,size=64m", disk).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	before := countBlocks(t, store)
	r := runJSON(t, "import", "--quiet", "--json", "--store", store, src, "/x")
	if gained := countBlocks(t, store) - before; int(r.NewBlocks+r.MetaBlocks) != gained {
		t.Errorf("rerun: %d new + %d metadata blocks, the store gained %d", r.NewBlocks, r.MetaBlocks, gained)
	}
	if kept > 0 && r.NewBlocks >= r.Blocks {
		t.Errorf("rerun stored all %d blocks again although %d files were kept", r.Blocks, kept)
	}
	if n := checkWhole(t, store, want); n != len(want) {
		t.Errorf("after the rerun %d of %d files", n, len(want))
	}
}
