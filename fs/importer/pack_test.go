package importer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
)

// smallTree writes n small files in each of dirs (with a subdirectory
// between them in name order) plus one large file, and returns the files'
// contents by relative path.
func smallTree(t *testing.T, src string, seed uint64, dirs []string, n int) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for di, d := range dirs {
		for i := range n {
			rel := filepath.Join(d, fmt.Sprintf("f%03d.py", i))
			files[rel] = fstest.RandomBytes(seed+uint64(di*1000+i), 100+i*37)
		}
		files[filepath.Join(d, "m/inner.py")] = fstest.RandomBytes(seed+uint64(di*1000+999), 500)
	}
	files["big.so"] = fstest.RandomBytes(seed+7, 300<<10)
	for rel, data := range files {
		fstest.WriteFile(t, filepath.Join(src, rel), data, 0o644)
	}
	return files
}

func openVol(t *testing.T, store string) *volume.Volume {
	t.Helper()
	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vol.Close() })
	return vol
}

// TestPackSmallFiles: files below PackBelow are ranges of a few shared
// packs, in tree order (a directory's files share a pack), while a large
// file is stored as before; every file reads back byte for byte.
func TestPackSmallFiles(t *testing.T) {
	src, store := t.TempDir(), filepath.Join(t.TempDir(), "store")
	files := smallTree(t, src, 1, []string{"a", "b"}, 40)
	st := fstest.ImportWith(t, store, volume.Options{}, src, "/t", importer.Options{PackBelow: 64 << 10, PackSize: 1 << 20})
	if st.Packed != 82 || st.Packs != 1 {
		t.Errorf("packed %d files into %d packs, want 82 into 1", st.Packed, st.Packs)
	}
	// 1 pack + the large file's block(s): far fewer than one per file.
	if st.NewBlocks > 3 {
		t.Errorf("stored %d blocks for %d files", st.NewBlocks, len(files))
	}
	vol := openVol(t, store)
	packs := map[blockstore.Hash]bool{}
	for rel, want := range files {
		p := "/t/" + filepath.ToSlash(rel)
		n, err := vol.Tree.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fstest.ReadBack(t, vol, p); !bytes.Equal(got, want) {
			t.Fatalf("%s differs", p)
		}
		if rel == "big.so" {
			if n.Packed() {
				t.Error("the large file was packed")
			}
			continue
		}
		if !n.Packed() || n.Sum != blockstore.Sum(want) {
			t.Fatalf("%s: packed %v, sum %v", p, n.Packed(), n.Sum)
		}
		packs[n.Blocks[0].Hash] = true
	}
	if len(packs) != 1 {
		t.Errorf("small files in %d packs", len(packs))
	}
}

// TestPackOrder: with small packs, a directory's own files are packed
// together before those of its subdirectory, whatever names sort between.
func TestPackOrder(t *testing.T) {
	src, store := t.TempDir(), filepath.Join(t.TempDir(), "store")
	for i, rel := range []string{"d/a1", "d/b/inner", "d/c1", "d/c2"} {
		fstest.WriteFile(t, filepath.Join(src, rel), fstest.RandomBytes(uint64(i), 3000), 0o644)
	}
	fstest.ImportWith(t, store, volume.Options{}, src, "/", importer.Options{PackBelow: 4096, PackSize: 8000})
	vol := openVol(t, store)
	pack := func(p string) blockstore.Hash {
		n, err := vol.Tree.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		return n.Blocks[0].Hash
	}
	// Packs cut after 8000 bytes: a1 c1 c2 (9000) | inner.
	if pack("/d/a1") != pack("/d/c2") || pack("/d/a1") == pack("/d/b/inner") {
		t.Error("a directory's files are not packed together ahead of its subdirectory")
	}
}

// TestPackDedupAcrossTrees: a small file imported into a second tree, among
// other neighbours, is the same range of the first tree's pack: its bytes
// are not stored twice. The same content twice in one import is one range.
func TestPackDedupAcrossTrees(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	opts := importer.Options{PackBelow: 64 << 10}
	shared := fstest.RandomBytes(99, 5000)
	one, two := t.TempDir(), t.TempDir()
	smallTree(t, one, 1, []string{"x"}, 10)
	smallTree(t, two, 500, []string{"y", "z"}, 10)
	fstest.WriteFile(t, filepath.Join(one, "x/shared.py"), shared, 0o644)
	fstest.WriteFile(t, filepath.Join(two, "y/copy.py"), shared, 0o644)
	fstest.WriteFile(t, filepath.Join(two, "z/again.py"), shared, 0o644)
	fstest.ImportWith(t, store, volume.Options{}, one, "/one", opts)
	second := fstest.ImportWith(t, store, volume.Options{}, two, "/two", opts)

	vol := openVol(t, store)
	look := func(p string) *tree.Node {
		n, err := vol.Tree.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a, b, c := look("/one/x/shared.py"), look("/two/y/copy.py"), look("/two/z/again.py")
	if b.Blocks[0] != a.Blocks[0] || b.Ranges[0] != a.Ranges[0] || c.Blocks[0] != a.Blocks[0] {
		t.Fatalf("the copies are not the first tree's range: %v %v, %v %v", a.Blocks, a.Ranges, b.Blocks, b.Ranges)
	}
	if got := fstest.ReadBack(t, vol, "/two/z/again.py"); !bytes.Equal(got, shared) {
		t.Fatal("the deduplicated copy reads back wrong")
	}
	// The second import stored its 22 other small files and its large
	// file, not the shared content: new bytes are those files' bytes.
	var others int64
	err := filepathWalkSize(two, func(rel string, size int64) {
		if rel != "y/copy.py" && rel != "z/again.py" {
			others += size
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if second.NewBytes != others {
		t.Errorf("second import stored %d new bytes, its other files have %d", second.NewBytes, others)
	}
	// Importing the same tree again stores nothing at all.
	if again := fstest.ImportWith(t, store, volume.Options{}, two, "/two", opts); again.NewBlocks != 0 || again.Packs != 0 {
		t.Errorf("re-import stored %d blocks, %d packs", again.NewBlocks, again.Packs)
	}
}

func filepathWalkSize(root string, fn func(rel string, size int64)) error {
	return filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fn(filepath.ToSlash(rel), fi.Size())
		return nil
	})
}

// hasCounter counts the existence checks an import asks its store.
type hasCounter struct {
	blockstore.Store
	has atomic.Int64
}

func (c *hasCounter) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	c.has.Add(1)
	return c.Store.Has(ctx, h)
}

func (c *hasCounter) Unwrap() blockstore.Store { return c.Store }

// importCounting imports src into store under dest and counts Has calls.
func importCounting(t *testing.T, store, src, dest string, opts importer.Options) (importer.Stats, int64) {
	t.Helper()
	vol, err := volume.Open(context.Background(), store, volume.Options{Options: storeurl.Options{Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	c := &hasCounter{Store: vol.Blocks}
	vol.Blocks = c
	im, err := importer.New(vol, opts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := im.Import(context.Background(), src, dest)
	if err != nil {
		t.Fatal(err)
	}
	return st, c.has.Load()
}

// TestPackImportAsksLittle: a packing import asks the store about no new
// pack (its bytes are contents nothing known matched) and about no block
// the catalog references; only the large files' new blocks are checked.
func TestPackImportAsksLittle(t *testing.T) {
	src, store := t.TempDir(), filepath.Join(t.TempDir(), "store")
	smallTree(t, src, 1, []string{"a", "b", "c"}, 50)
	opts := importer.Options{PackBelow: 64 << 10, PackSize: 32 << 10}
	first, has := importCounting(t, store, src, "/one", opts)
	if first.Packs < 3 {
		t.Fatalf("only %d packs", first.Packs)
	}
	if big := first.NewBlocks - first.Packs; has != big {
		t.Errorf("first import: %d existence checks for %d packs and %d other blocks, want %d", has, first.Packs, big, big)
	}
	second, has := importCounting(t, store, src, "/two", opts)
	if has != 0 || second.NewBlocks != 0 || second.Packed != first.Packed {
		t.Errorf("import of a tree the catalog has: %d existence checks, %d new blocks, %d of %d packed", has, second.NewBlocks, second.Packed, first.Packed)
	}
	if _, has = importCounting(t, store, src, "/three", importer.Options{PackBelow: 64 << 10, Repair: true}); has == 0 {
		t.Error("--repair trusted the catalog instead of checking the store")
	}
}
