package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/blockstore"
)

// TestLsDu: ls and du read the catalog only: with every file block deleted
// from the store they still list names, modes, sizes and block counts, add
// up sizes and dedup, and show a tagged snapshot with --at. Unpacked
// (--pack-below 0), so that each small file is one block to remove and
// to count.
func TestLsDu(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a.txt"), "same bytes\n")
	writeFile(t, filepath.Join(src, "sub/copy.txt"), "same bytes\n")
	writeFile(t, filepath.Join(src, "sub/other.txt"), "other\n")
	if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "import", "--pack-below", "0", "--store", store, src, "/d")
	mustRun(t, "tag", "--store", store, "first")
	writeFile(t, filepath.Join(src, "new.txt"), "new\n")
	mustRun(t, "import", "--pack-below", "0", "--store", store, src, "/d")
	for _, data := range []string{"same bytes\n", "other\n", "new\n"} {
		h := blockstore.Sum([]byte(data)).String()
		if err := os.Remove(filepath.Join(store, "blocks", h[:2], h)); err != nil {
			t.Fatal(err)
		}
	}

	if out := mustRun(t, "ls", "--store", store, "/d"); out != "a.txt\nlink\nnew.txt\nsub\n" {
		t.Errorf("ls /d = %q", out)
	}
	if out := mustRun(t, "ls", "--store", store, "--at", "first", "/d"); out != "a.txt\nlink\nsub\n" {
		t.Errorf("ls --at first /d = %q", out)
	}
	out := mustRun(t, "ls", "-lR", "--store", store, "/d")
	for _, want := range []string{"/d/sub/other.txt", "-rw-r--r--", "1 blocks", "/d/link -> a.txt", "drwx"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls -lR lacks %q:\n%s", want, out)
		}
	}
	var du struct {
		Files, Dirs, Symlinks, Bytes int64
		UniqueBlocks                 int64   `json:"unique_blocks"`
		Dedup                        float64 `json:"dedup"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "du", "--json", "--store", store, "--at", "first", "/d")), &du); err != nil {
		t.Fatal(err)
	}
	if du.Files != 3 || du.Dirs != 2 || du.Symlinks != 1 || du.Bytes != 28 || du.UniqueBlocks != 2 || du.Dedup < 1.6 || du.Dedup > 1.7 {
		t.Errorf("du --at first = %+v", du)
	}
	if code, _, stderr := blockfs("ls", "--store", store, "/nope"); code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("ls of a missing path: exit %d %q", code, stderr)
	}
}
