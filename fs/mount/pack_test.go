package mount_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"

	"golang.org/x/sys/unix"
)

type treeNode = tree.Node

// packedStore imports dirs of n small files each, packed, and returns the
// store and the files' contents by tree path.
func packedStore(t *testing.T, dirs []string, n int, packSize int64) (string, map[string][]byte) {
	t.Helper()
	src, store := t.TempDir(), filepath.Join(t.TempDir(), "store")
	files := map[string][]byte{}
	for di, d := range dirs {
		for i := range n {
			rel := fmt.Sprintf("%s/f%03d.py", d, i)
			data := fstest.RandomBytes(uint64(di*1000+i), 1+i*173%9000)
			fstest.WriteFile(t, filepath.Join(src, rel), data, 0o644)
			files["/p/"+rel] = data
		}
	}
	st := fstest.ImportWith(t, store, volume.Options{}, src, "/p", importer.Options{PackBelow: 64 << 10, PackSize: packSize})
	if st.Packed != int64(len(files)) {
		t.Fatalf("packed %d of %d files", st.Packed, len(files))
	}
	return store, files
}

// TestPackedFilesThroughMount: packed files read byte for byte through a
// real mount with cat, pread and mmap, and one GET of their pack serves
// every one of them.
func TestPackedFilesThroughMount(t *testing.T) {
	store, files := packedStore(t, []string{"lib"}, 40, 4<<20)
	tm := fstest.MountStore(t, store, mount.Options{})
	var pack blockstore.Locator
	for p := range files {
		pack = tm.BlocksOf(t, p)[0]
	}
	for p, want := range files {
		if got := fstest.Sh(t, "cat", tm.Path(p)); got != string(want) {
			t.Fatalf("cat %s: %d bytes differ from the %d imported", p, len(got), len(want))
		}
		if got := tm.BlocksOf(t, p)[0]; got != pack {
			t.Fatalf("%s is in pack %v, not %v", p, got, pack)
		}
	}
	if got, of := tm.Store.Gets(), tm.Store.GetsOf(pack.Hash); got != 1 || of != 1 {
		t.Errorf("reading %d packed files took %d GETs (%d of the pack), want 1", len(files), got, of)
	}
	p := "/p/lib/f039.py"
	data := files[p]
	spec := fmt.Sprintf("0:%d 5:100 %d:7 %d:50000", len(data), len(data)-7, len(data)/2)
	h := sha256.New()
	h.Write(data)
	h.Write(data[5:105])
	h.Write(data[len(data)-7:])
	h.Write(data[len(data)/2:])
	if got := fstest.RunHelper(t, "pread", tm.Path(p), "BLOCKFS_OFFSETS="+spec); got != hex.EncodeToString(h.Sum(nil)) {
		t.Errorf("pread of %s: digest %s", p, got)
	}
	for _, p := range []string{"/p/lib/f000.py", "/p/lib/f017.py", p} {
		sum := sha256.Sum256(files[p])
		if got := fstest.RunHelper(t, "mmap", tm.Path(p)); got != hex.EncodeToString(sum[:]) {
			t.Errorf("mmap of %s: digest %s", p, got)
		}
	}
	// The introspection attributes speak of the file, not of its pack.
	buf := make([]byte, 256)
	k, err := unix.Getxattr(tm.Path(p), "user.blockfs.hash", buf)
	if want := mount.ContentHash(mustLookup(t, tm, p)); err != nil || string(buf[:k]) != want {
		t.Errorf("user.blockfs.hash = %q, %v; want %q", buf[:k], err, want)
	}
	k, err = unix.Getxattr(tm.Path(p), "user.blockfs.blocks", buf)
	if want := fmt.Sprintf("%s 0 %d %d\n", pack.Hash, len(data), mustLookup(t, tm, p).Off(0)); err != nil || string(buf[:k]) != want {
		t.Errorf("user.blockfs.blocks = %q, %v; want %q", buf[:k], err, want)
	}
}

func mustLookup(t *testing.T, tm *fstest.Mount, p string) *treeNode {
	t.Helper()
	n, err := tm.Vol.Tree.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPackedContentHashIsUnpacked: a packed file's user.blockfs.hash is
// that of the same bytes stored whole as one block, and differs from its
// pack neighbours'.
func TestPackedContentHashIsUnpacked(t *testing.T) {
	store, files := packedStore(t, []string{"d"}, 3, 1<<20)
	vol, err := volume.Open(t.Context(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	seen := map[string]bool{}
	for p, data := range files {
		n, err := vol.Tree.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		whole := &treeNode{}
		whole.SetBlocks([]blockstore.Locator{blockstore.LocatorOf(data)})
		if got, want := mount.ContentHash(n), mount.ContentHash(whole); got != want || seen[got] {
			t.Errorf("%s: hash %s, want %s (unique)", p, got, want)
		}
		seen[mount.ContentHash(n)] = true
	}
}

// TestMountOldStore: a store written before node format 3 (testdata/v2store,
// by the previous release) still mounts and serves its files.
func TestMountOldStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if out, err := exec.Command("cp", "-a", "testdata/v2store", store).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(store, "blocks/tmp"), 0o755); err != nil { // git keeps no empty directory
		t.Fatal(err)
	}
	tm := fstest.MountStore(t, store, mount.Options{})
	fstest.CmpTrees(t, "testdata/v2tree", tm.Path("/v2"))
	if got := strings.TrimSpace(fstest.Sh(t, "readlink", tm.Path("/v2/lib/link"))); got != "a.py" {
		t.Errorf("link = %q", got)
	}
	got, err := os.ReadFile(tm.Path("/v2/lib/a.py"))
	if err != nil || !bytes.Contains(got, []byte(`print("hello")`)) {
		t.Errorf("a.py = %q, %v", got, err)
	}
}

// distinctPacks is the set of packs of files.
func distinctPacks(t *testing.T, tm *fstest.Mount, files map[string][]byte, dir string) map[blockstore.Locator]bool {
	t.Helper()
	packs := map[blockstore.Locator]bool{}
	for p := range files {
		if strings.HasPrefix(p, dir+"/") {
			packs[tm.BlocksOf(t, p)[0]] = true
		}
	}
	return packs
}

// TestOpenPrefetchesSiblingPacks: opening one packed file fetches the
// packs of its directory's other files in parallel (and not those of
// another directory), so reading them all afterwards costs no GET more.
func TestOpenPrefetchesSiblingPacks(t *testing.T) {
	store, files := packedStore(t, []string{"a", "b"}, 60, 64<<10)
	tm := fstest.MountStore(t, store, mount.Options{})
	packsA, packsB := distinctPacks(t, tm, files, "/p/a"), distinctPacks(t, tm, files, "/p/b")
	if len(packsA) < 4 {
		t.Fatalf("only %d packs in /p/a", len(packsA))
	}
	// Open by path: the lookups do not list the directory.
	if got := fstest.Sh(t, "cat", tm.Path("/p/a/f010.py")); got != string(files["/p/a/f010.py"]) {
		t.Fatal("cat differs")
	}
	want := int64(len(packsA))
	testsvc.WaitFor(t, "sibling packs fetched", func() bool {
		return tm.Pool().Stats().InFlight == 0 && tm.Store.Gets() >= want
	})
	for l := range packsA {
		if n := tm.Store.GetsOf(l.Hash); n != 1 {
			t.Errorf("pack %v of /p/a fetched %d times", l, n)
		}
	}
	for l := range packsB {
		if packsA[l] {
			continue // packs are cut by size: one may hold the end of a and the start of b
		}
		if n := tm.Store.GetsOf(l.Hash); n != 0 {
			t.Errorf("pack %v of /p/b fetched on an open in /p/a", l)
		}
	}
	for p, data := range files {
		if strings.HasPrefix(p, "/p/a/") {
			if got, err := os.ReadFile(tm.Path(p)); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: %v", p, err)
			}
		}
	}
	if got := tm.Store.Gets(); got != want {
		t.Errorf("reading all of /p/a took %d GETs, want %d (its packs, once each)", got, want)
	}
}

// TestListingPrefetchesPacksWithinBudget: listing a directory prefetches
// its packs, no more bytes of them than SiblingPrefetch, and none with
// SiblingPrefetch < 0.
func TestListingPrefetchesPacksWithinBudget(t *testing.T) {
	store, files := packedStore(t, []string{"a"}, 60, 64<<10)
	for _, c := range []struct {
		budget int64
		want   func(n int) int
	}{
		{budget: 0, want: func(n int) int { return n }},
		{budget: 150 << 10, want: func(int) int { return 2 }}, // packs are 64-73 KiB
		{budget: -1, want: func(int) int { return 0 }},
	} {
		tm := fstest.MountStore(t, store, mount.Options{SiblingPrefetch: c.budget})
		packs := distinctPacks(t, tm, files, "/p/a")
		if _, err := os.ReadDir(tm.Path("/p/a")); err != nil {
			t.Fatal(err)
		}
		want := int64(c.want(len(packs)))
		testsvc.WaitFor(t, "listing's prefetches", func() bool {
			return tm.Pool().Stats().InFlight == 0 && tm.Store.Gets() >= want
		})
		if got := tm.Store.Gets(); got != want {
			t.Errorf("budget %d: listing fetched %d packs, want %d of %d", c.budget, got, want, len(packs))
		}
	}
}
