package volume_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/volume"
)

// TestVerify: a healthy store verifies; a deleted block file is found as
// missing (fast and deep), a damaged one as corrupt (deep only), each with
// the files that use it.
func TestVerify(t *testing.T) {
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "a"), fstest.RandomBytes(91, 600<<10), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "b"), fstest.RandomBytes(92, 600<<10), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "a-copy"), fstest.RandomBytes(91, 600<<10), 0o644)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/v", chunker.Config{Fixed: true, Avg: 256 << 10})
	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	ctx := context.Background()
	for _, deep := range []bool{false, true} {
		rep, err := vol.Verify(ctx, "/", deep, 4, nil)
		if err != nil || !rep.OK() || rep.Files != 3 || rep.Blocks != 7 || rep.Checked != 7 { // 6 of the files, 1 the metadata part
			t.Fatalf("healthy store, deep=%v: %+v %v", deep, rep, err)
		}
	}
	blockFile := func(p string, i int) string {
		n, err := vol.Tree.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		h := n.Blocks[i].Hash.String()
		return filepath.Join(store, "blocks", h[:2], h)
	}
	if err := os.Remove(blockFile("/v/a", 0)); err != nil { // shared by a and a-copy
		t.Fatal(err)
	}
	bad := blockFile("/v/b", 1)
	data, _ := os.ReadFile(bad)
	data[7] ^= 1
	os.Chmod(bad, 0o644)
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}

	rep, err := vol.Verify(ctx, "/", false, 4, nil)
	if err != nil || len(rep.Missing) != 1 || len(rep.Corrupt) != 0 {
		t.Fatalf("fast verify: %+v %v", rep, err)
	}
	if p := rep.Missing[0].Paths; len(p) != 2 || p[0] != "/v/a" || p[1] != "/v/a-copy" {
		t.Errorf("missing block used by %v", p)
	}
	rep, err = vol.Verify(ctx, "/", true, 4, nil)
	if err != nil || len(rep.Missing) != 1 || len(rep.Corrupt) != 1 || rep.OK() {
		t.Fatalf("deep verify: %+v %v", rep, err)
	}
	if p := rep.Corrupt[0].Paths; len(p) != 1 || p[0] != "/v/b" {
		t.Errorf("corrupt block used by %v", p)
	}
	// Verifying a subtree checks only what it uses.
	rep, err = vol.Verify(ctx, "/v/b", true, 4, nil)
	if err != nil || rep.Files != 1 || len(rep.Missing) != 0 || len(rep.Corrupt) != 1 {
		t.Errorf("subtree verify: %+v %v", rep, err)
	}
}
