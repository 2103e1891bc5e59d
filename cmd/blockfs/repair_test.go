package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// TestImportRepairsCorruptBlock: a block corrupted in the store is found by
// verify --deep, is not noticed by a plain re-import (the store has a file
// of that name), and is rewritten by import --repair, after which verify
// --deep is clean. The files are stored unpacked (--pack-below 0): the
// block is config.json's own, rewritten in place; packs are
// TestImportRepairsCorruptPack's.
func TestImportRepairsCorruptBlock(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--pack-below", "0", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	data, err := os.ReadFile("../../testdata/sample/models/config.json")
	if err != nil {
		t.Fatal(err)
	}
	block := blockFile(store, blockstore.Sum(data))
	testsvc.CorruptInPlace(t, block)

	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 1 || !strings.Contains(out+stderr, "corrupt") {
		t.Fatalf("verify --deep of a corrupt block: exit %d, %s %s", code, out, stderr)
	}
	if code, out, stderr := blockfs("import", "--pack-below", "0", "--store", store, "../../testdata/sample"); code != 0 || strings.Contains(out, "repaired") {
		t.Fatalf("plain re-import: %d %s %s", code, out, stderr)
	}
	if code, _, _ := blockfs("verify", "--deep", "--store", store); code != 1 {
		t.Fatal("a plain re-import repaired the block: the test shows nothing")
	}
	code, out, stderr := blockfs("import", "--pack-below", "0", "--repair", "--store", store, "../../testdata/sample")
	if code != 0 || !strings.Contains(out, "1 corrupt blocks repaired") || !strings.Contains(stderr, "was corrupt in the store: rewritten") {
		t.Fatalf("import --repair: exit %d, %q %q", code, out, stderr)
	}
	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 0 {
		t.Errorf("verify --deep after the repair: exit %d, %s %s", code, out, stderr)
	}
	if got, err := os.ReadFile(block); err != nil || string(got) != string(data) {
		t.Errorf("the block file after the repair: %q, %v", got, err)
	}
}

// TestImportRepairsCorruptPack: with the default packing, the sample's
// small files share a pack; corrupted in the store, verify --deep finds it,
// a plain re-import does not notice, and import --repair packs the files
// afresh (a pack cannot be rebuilt from one file of it): the same files
// make the same pack, which overwrites the corrupt one, after which verify
// --deep is clean.
func TestImportRepairsCorruptPack(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	data, err := os.ReadFile("../../testdata/sample/models/config.json")
	if err != nil {
		t.Fatal(err)
	}
	pack := findPack(t, store, data)
	if err := os.Chmod(pack, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(pack, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XXXX"), 1); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 1 || !strings.Contains(out+stderr, "corrupt") {
		t.Fatalf("verify --deep of a corrupt pack: exit %d, %s %s", code, out, stderr)
	}
	if code, out, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 || strings.Contains(out, "repaired") {
		t.Fatalf("plain re-import: %d %s %s", code, out, stderr)
	}
	if code, _, _ := blockfs("verify", "--deep", "--store", store); code != 1 {
		t.Fatal("a plain re-import repaired the pack: the test shows nothing")
	}
	code, out, stderr := blockfs("import", "--repair", "--store", store, "../../testdata/sample")
	if code != 0 || !strings.Contains(out, "1 corrupt blocks repaired") || !strings.Contains(stderr, "packed afresh") {
		t.Fatalf("import --repair: exit %d, %q %q", code, out, stderr)
	}
	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 0 {
		t.Errorf("verify --deep after the repair: exit %d, %s %s", code, out, stderr)
	}
	if got := findPack(t, store, data); got != pack {
		t.Errorf("the same files packed afresh are a new pack %s, not the corrupt one rewritten", got)
	}
}

// findPack is the intact block file of a store that holds data among
// other bytes (its pack), failing unless there is exactly one.
func findPack(t *testing.T, store string, data []byte) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(store, "blocks", "??", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > len(data) && bytes.Contains(b, data) && blockstore.Sum(b).String() == filepath.Base(p) {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d intact packs hold config.json: %q", len(found), found)
	}
	return found[0]
}

// TestMountOwnerOverrides: --uid/--file-mode and the same as -o options
// change what a real mount serves; without them the stored owner shows.
func TestMountOwnerOverrides(t *testing.T) {
	testsvc.RequireFUSE(t)
	src := t.TempDir()
	p := filepath.Join(src, "f")
	if err := os.WriteFile(p, []byte("data\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1001, 1002); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, src, "/d"); code != 0 {
		t.Fatal(stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "1001 1002 640"},
		{[]string{"--uid", "7", "--gid", "8", "--file-mode", "0444"}, "7 8 444"},
		{[]string{"-o", "uid=9,umask=077"}, "9 1002 600"},
	} {
		mnt := t.TempDir()
		cmd := startMount(t, store, mnt, c.args...)
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(mnt, "d", "f"), &st); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%d %d %o", st.Uid, st.Gid, st.Mode&0o7777); got != c.want {
			t.Errorf("mount %q: owner and mode %s, want %s", c.args, got, c.want)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}

// TestImportHelpSaysExitStatuses: what an interrupt keeps and every exit
// status are in `blockfs help import`.
func TestImportHelpSaysExitStatuses(t *testing.T) {
	code, out, _ := blockfs("help", "import")
	for _, want := range []string{"130 (SIGINT)", "143 (SIGTERM)", "every file whose blocks are all\nstored is committed", "23 some paths could not be imported", "--repair", "--publish-interval"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("help import lacks %q:\n%s", want, out)
		}
	}
}

// TestRepairRebuildsACorruptPart: the root metadata part corrupted in the
// store (same size: a plain put would leave it) is reported by verify and
// by repair --dry-run, which changes nothing; repair rebuilds the parts
// from the segments, which are whole, writing the block again in place
// (no new snapshot), after which verify passes.
func TestRepairRebuildsACorruptPart(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	cat, err := volume.OpenCatalog(context.Background(), store, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cat.Current(context.Background())
	cat.Close()
	if err != nil || m.Parts == nil {
		t.Fatalf("current manifest: parts %v, %v", m.Parts, err)
	}
	block := blockFile(store, m.Parts.Ref.Blocks[0].Hash)
	good, bad := testsvc.CorruptInPlace(t, block)

	if code, out, stderr := blockfs("verify", "--store", store); code != 1 || !strings.Contains(out+stderr, "metadata part of /") {
		t.Fatalf("verify of a corrupt part: exit %d, %s %s", code, out, stderr)
	}
	code, out, stderr := blockfs("repair", "--dry-run", "--store", store)
	if code != 0 || !strings.Contains(out, "damaged: metadata part of /") || !strings.Contains(out, "would rebuild the metadata parts of snapshot 1") {
		t.Fatalf("repair --dry-run: exit %d, %q %q", code, out, stderr)
	}
	if got, _ := os.ReadFile(block); !bytes.Equal(got, bad) {
		t.Fatal("repair --dry-run changed the block")
	}
	code, out, stderr = blockfs("repair", "--store", store)
	if code != 0 || !strings.Contains(out, "repaired: rebuilt the metadata parts of snapshot 1 from its segments, 1 blocks written again\n") {
		t.Fatalf("repair: exit %d, %q %q", code, out, stderr)
	}
	if got, _ := os.ReadFile(block); !bytes.Equal(got, good) {
		t.Error("the part's block was not written again with its bytes")
	}
	if code, out, stderr := blockfs("verify", "--store", store); code != 0 {
		t.Errorf("verify after the repair: exit %d, %s %s", code, out, stderr)
	}
	if out := mustRun(t, "repair", "--store", store); !strings.Contains(out, "nothing to repair: the metadata of snapshot 1 is whole") {
		t.Errorf("a second repair: %q", out)
	}
}

// blockFile is where a directory store keeps block h.
func blockFile(store string, h blockstore.Hash) string {
	s := h.String()
	return filepath.Join(store, "blocks", s[:2], s)
}
