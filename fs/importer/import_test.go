package importer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"blockfs/blockstore/storeurl"
	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
)

func TestMain(m *testing.M) { fstest.Main(m) }

// TestImportInsertionsStoreLittle: content-defined chunking means 10
// scattered insertions into a large file only change the blocks around them.
func TestImportInsertionsStoreLittle(t *testing.T) {
	size := 64 << 20
	if testing.Short() {
		size = 16 << 20
	}
	dir := t.TempDir()
	data := fstest.RandomBytes(21, size)
	src := filepath.Join(dir, "big")
	fstest.WriteFile(t, src, data, 0o644)
	store := filepath.Join(dir, "store")
	first := fstest.ImportInto(t, store, src, "/big", chunker.Config{})

	edited := insertScattered(data, 10)
	fstest.WriteFile(t, src, edited, 0o644)
	second := fstest.ImportInto(t, store, src, "/big", chunker.Config{})
	frac := float64(second.NewBytes) / float64(second.Bytes)
	t.Logf("first import %d blocks; after 10 insertions: %d of %d blocks new, %.1f%% of bytes", first.Blocks, second.NewBlocks, second.Blocks, 100*frac)
	if frac > 0.25 {
		t.Errorf("10 insertions stored %.1f%% of the file anew", 100*frac)
	}
	// And the stored file is the edited one.
	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	if got := fstest.ReadBack(t, vol, "/big"); !bytes.Equal(got, edited) {
		t.Fatal("re-imported file differs from the edited source")
	}
}

// insertScattered inserts a few bytes at n evenly spread places.
func insertScattered(data []byte, n int) []byte {
	out := make([]byte, 0, len(data)+n*64)
	step := len(data) / (n + 1)
	prev := 0
	for i := 1; i <= n; i++ {
		at := i*step + i*7919
		out = append(out, data[prev:at]...)
		out = append(out, []byte(fmt.Sprintf("<<insertion %d>>", i))...)
		prev = at
	}
	return append(out, data[prev:]...)
}

func TestReimportWritesNothing(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	first := fstest.ImportInto(t, store, fstest.SampleData(), "/s", chunker.Config{})
	second := fstest.ImportInto(t, store, fstest.SampleData(), "/s", chunker.Config{})
	if first.NewBlocks == 0 || second.NewBlocks != 0 || second.NewBytes != 0 || second.Bytes != first.Bytes {
		t.Errorf("first %+v, second %+v", first, second)
	}
}

// TestImportFullDiskLosesNothing imports into a store on a small tmpfs that
// fills up part way: a real failing backend. The import fails with ENOSPC,
// and every file the store shows afterwards is complete and correct.
func TestImportFullDiskLosesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a tmpfs needs root under CI=true")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	want := map[string][]byte{}
	for i := range 40 {
		rel := fmt.Sprintf("d%d/file-%02d", i%4, i)
		want["/src/"+rel] = fstest.RandomBytes(uint64(100+i), 300<<10+i*1000)
		fstest.WriteFile(t, filepath.Join(src, rel), want["/src/"+rel], 0o644)
	}
	disk := filepath.Join(dir, "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer func() {
		// Busy means a descriptor of ours (a temp session's lock) outlived Close.
		if out, err := exec.Command("umount", disk).CombinedOutput(); err != nil {
			t.Errorf("umount of the store's tmpfs: %v %s", err, out)
		}
	}()
	store := filepath.Join(disk, "store")

	vol, err := volume.Open(context.Background(), store, volume.Options{Options: storeurl.Options{Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	im, err := importer.New(vol, importer.Options{Chunking: chunker.Config{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}, BatchEntries: 4, PublishInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = im.Import(context.Background(), src, "/src")
	vol.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("import onto a full disk: %v, want ENOSPC", err)
	}
	if left, _ := filepath.Glob(filepath.Join(store, "blocks", "tmp", "*", "*")); len(left) != 0 {
		t.Errorf("temp files left after the failed import: %q", left)
	}

	vol, err = volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatalf("reopening after a failed import: %v", err)
	}
	files := 0
	err = vol.Tree.Walk("/", func(p string, n *tree.Node) error {
		if n.Kind != tree.KindFile {
			return nil
		}
		files++
		if got := fstest.ReadBack(t, vol, p); !bytes.Equal(got, want[p]) {
			t.Errorf("%s: visible but not complete and correct", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 || files == len(want) {
		t.Errorf("%d of %d files visible: the disk did not fill part way", files, len(want))
	}
	t.Logf("%d of %d files committed before the disk filled", files, len(want))
	vol.Close()

	// The operator frees space; the rerun stores only what is missing:
	// the store gains exactly the blocks the rerun says it wrote, and
	// fewer than a fresh import would.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", disk).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	blockFiles := func() int {
		m, _ := filepath.Glob(filepath.Join(store, "blocks", "[0-9a-f][0-9a-f]", "*"))
		return len(m)
	}
	before := blockFiles()
	st := fstest.ImportWith(t, store, volume.Options{}, src, "/src", importer.Options{Chunking: chunker.Config{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}})
	if gained := blockFiles() - before; int64(gained) != st.NewBlocks+st.MetaBlocks || st.NewBlocks >= st.Blocks {
		t.Errorf("rerun: %d new of %d blocks (+%d metadata), the store gained %d", st.NewBlocks, st.Blocks, st.MetaBlocks, gained)
	}
	vol, err = volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	for p, data := range want {
		if got := fstest.ReadBack(t, vol, p); !bytes.Equal(got, data) {
			t.Errorf("%s after the rerun: wrong bytes", p)
		}
	}
}

// TestImportSkipsSpecialFiles: a FIFO and a socket in the tree are skipped
// with a warning each; everything else is imported.
func TestImportSkipsSpecialFiles(t *testing.T) {
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "data.txt"), []byte("data\n"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(src, "sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "store")
	vol, err := volume.Open(context.Background(), store, volume.Options{Options: storeurl.Options{Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	var warnings []string
	im, err := importer.New(vol, importer.Options{Warn: func(err error) { warnings = append(warnings, err.Error()) }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := im.Import(context.Background(), src, "/t")
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 2 || st.Files != 1 || len(warnings) != 2 || !strings.Contains(strings.Join(warnings, "\n"), "fifo") {
		t.Errorf("stats %+v, warnings %q", st, warnings)
	}
	if got := fstest.ReadBack(t, vol, "/t/data.txt"); string(got) != "data\n" {
		t.Errorf("data.txt = %q", got)
	}
	if _, err := vol.Tree.Lookup("/t/fifo"); !errors.Is(err, tree.ErrNotExist) {
		t.Errorf("fifo imported: %v", err)
	}
}

// TestImportDelete: re-importing a tree with Delete removes what the
// source lost (files, symlinks, whole directories) and keeps the rest;
// without Delete an import only adds.
func TestImportDelete(t *testing.T) {
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "keep.txt"), []byte("keep"), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "gone.txt"), []byte("gone"), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "olddir/deep/x"), []byte("x"), 0o644)
	if err := os.Symlink("keep.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/t", chunker.Config{})
	fstest.ImportInto(t, store, src, "/other", chunker.Config{}) // a sibling tree, untouched by the delete

	os.Remove(filepath.Join(src, "gone.txt"))
	os.Remove(filepath.Join(src, "link"))
	os.RemoveAll(filepath.Join(src, "olddir"))
	fstest.WriteFile(t, filepath.Join(src, "new.txt"), []byte("new"), 0o644)

	fstest.ImportWith(t, store, volume.Options{}, src, "/t", importer.Options{}) // adds only
	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vol.Tree.Lookup("/t/gone.txt"); err != nil {
		t.Errorf("an import without Delete removed a file: %v", err)
	}
	vol.Close()

	st := fstest.ImportWith(t, store, volume.Options{}, src, "/t", importer.Options{Delete: true})
	if st.Deleted != 5 { // gone.txt, link, olddir, olddir/deep, olddir/deep/x
		t.Errorf("deleted %d paths, want 5", st.Deleted)
	}
	vol, err = volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	var paths []string
	if err := vol.Tree.Walk("/", func(p string, n *tree.Node) error { paths = append(paths, p); return nil }); err != nil {
		t.Fatal(err)
	}
	want := "/ /other /other/gone.txt /other/keep.txt /other/link /other/olddir /other/olddir/deep /other/olddir/deep/x /t /t/keep.txt /t/new.txt"
	if got := strings.Join(paths, " "); got != want {
		t.Errorf("tree after --delete:\n got %s\nwant %s", got, want)
	}
}
