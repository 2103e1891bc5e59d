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

// TestDuPacked: du of a subtree that uses only part of a pack (its
// neighbour was removed) counts the pack whole among the stored blocks but
// only the range its files use as content, so the dedup ratio stays 1 for
// a tree without repeats, and goes above 1 when a second copy shares it.
func TestDuPacked(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "0123456789")
	writeFile(t, filepath.Join(src, "b"), "abcde")
	mustRun(t, "import", "--store", store, src, "/d") // packed by default
	mustRun(t, "rm", "--store", store, "/d/a")
	type report struct {
		Bytes        int64
		UniqueBlocks int64   `json:"unique_blocks"`
		UniqueBytes  int64   `json:"unique_bytes"`
		ContentBytes int64   `json:"content_bytes"`
		Dedup        float64 `json:"dedup"`
	}
	var du report
	if err := json.Unmarshal([]byte(mustRun(t, "du", "--json", "--store", store, "/d")), &du); err != nil {
		t.Fatal(err)
	}
	if du != (report{Bytes: 5, UniqueBlocks: 1, UniqueBytes: 15, ContentBytes: 5, Dedup: 1}) {
		t.Errorf("du of /d using 5 B of a 15 B pack = %+v", du)
	}
	mustRun(t, "import", "--store", store, filepath.Join(src, "b"), "/e/b") // the same content again
	du = report{}
	if err := json.Unmarshal([]byte(mustRun(t, "du", "--json", "--store", store, "/")), &du); err != nil {
		t.Fatal(err)
	}
	if du.Bytes != 10 || du.ContentBytes != 5 || du.Dedup != 2 {
		t.Errorf("du of / with b twice = %+v, want 10 B of 5 B content, dedup 2", du)
	}
}
