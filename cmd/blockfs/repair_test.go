package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/blockstore"
)

// TestImportRepairsCorruptBlock: a block corrupted in the store is found by
// verify --deep, is not noticed by a plain re-import (the store has a file
// of that name), and is rewritten by import --repair, after which verify
// --deep is clean.
func TestImportRepairsCorruptBlock(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	data, err := os.ReadFile("../../testdata/sample/models/config.json")
	if err != nil {
		t.Fatal(err)
	}
	h := blockstore.Sum(data).String()
	block := filepath.Join(store, "blocks", h[:2], h)
	if err := os.Chmod(block, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(block, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XXXX"), 1); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if code, out, stderr := blockfs("verify", "--deep", "--store", store); code != 1 || !strings.Contains(out+stderr, "corrupt") {
		t.Fatalf("verify --deep of a corrupt block: exit %d, %s %s", code, out, stderr)
	}
	if code, out, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 || strings.Contains(out, "repaired") {
		t.Fatalf("plain re-import: %d %s %s", code, out, stderr)
	}
	if code, _, _ := blockfs("verify", "--deep", "--store", store); code != 1 {
		t.Fatal("a plain re-import repaired the block: the test shows nothing")
	}
	code, out, stderr := blockfs("import", "--repair", "--store", store, "../../testdata/sample")
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
