package blockstore

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newDir(t testing.TB) *DirStore {
	t.Helper()
	d, err := OpenDir(filepath.Join(t.TempDir(), "store"), true)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDirLayout: a block is the file <root>/<2 hex>/<64 hex>, and a
// locator whose size is not the file's is ErrCorrupt. The Store
// contract itself is storetest's (dir_contract_test.go).
func TestDirLayout(t *testing.T) {
	d := newDir(t)
	data := []byte("some block content")
	loc := LocatorOf(data)
	if err := d.Put(context.Background(), loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(d.Root(), loc.Hash.String()[:2], loc.Hash.String())
	if fi, err := os.Stat(want); err != nil || fi.Size() != loc.Size {
		t.Fatalf("block file %s: %v", want, err)
	}
	if _, err := d.Get(context.Background(), Locator{loc.Hash, loc.Size - 1}, make([]byte, loc.Size)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get with wrong size: err = %v, want ErrCorrupt", err)
	}
}

func TestDirPutIdempotent(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	data := []byte("idempotent")
	h := Sum(data)
	if err := d.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d.Root(), h.String()[:2], h.String())
	fi1, _ := os.Stat(p)
	if err := d.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(p)
	if !os.SameFile(fi1, fi2) {
		t.Fatal("second Put rewrote the file")
	}
	// A damaged (truncated) file is repaired by the next Put.
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, data[:3], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatalf("damaged block not repaired: %q", got)
	}
}

func TestDirPutCorrupt(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	h := Sum([]byte("right"))
	if err := d.Put(ctx, h, []byte("wrong")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Put(corrupt) err = %v, want ErrCorrupt", err)
	}
	if ok, _ := d.Has(ctx, h); ok {
		t.Fatal("corrupt block stored")
	}
	assertNoTemps(t, d)
}

// TestDirMissing: a missing block is also fs.ErrNotExist, for callers
// that test for it.
func TestDirMissing(t *testing.T) {
	d := newDir(t)
	loc := LocatorOf([]byte("absent"))
	if _, err := d.Get(context.Background(), loc, make([]byte, loc.Size)); !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get(missing) err = %v, want ErrNotFound and fs.ErrNotExist", err)
	}
}

func TestDirTempLeftovers(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "store")
	d, err := OpenDir(root, true)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("survivor")
	h := Sum(data)
	if err := d.Put(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash mid-Put long ago (a stale temp file), a Put in flight
	// in another process (a fresh one), plus strays that are not blocks.
	sub := filepath.Join(root, h.String()[:2])
	tmp := filepath.Join(root, tempDir, tempPrefix+"123456")
	inflight := filepath.Join(root, tempDir, tempPrefix+"654321")
	for _, p := range []string{tmp, inflight, filepath.Join(sub, "README"), filepath.Join(root, "zz-not-fanout")} {
		if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(tmp, old, old); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := d.List(ctx, func(l Locator) error {
		n++
		if l.Hash != h {
			t.Errorf("List reported %v", l)
		}
		return nil
	}); err != nil || n != 1 {
		t.Fatalf("List = %d blocks, %v", n, err)
	}
	if _, err := OpenDir(root, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale temp file survived reopen: %v", err)
	}
	if _, err := os.Stat(inflight); err != nil {
		t.Fatalf("another writer's fresh temp file was removed: %v", err)
	}
	if ok, _ := d.Has(ctx, h); !ok {
		t.Fatal("real block removed by cleanup")
	}
}

// TestDirContainment writes and deletes blocks and checks nothing outside
// root changed: names come only from hashes, so there is nothing to escape
// with.
func TestDirContainment(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	root := filepath.Join(parent, "store")
	d, err := OpenDir(root, true)
	if err != nil {
		t.Fatal(err)
	}
	sentinel := filepath.Join(parent, "outside")
	if err := os.WriteFile(sentinel, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"../outside", "../../etc/passwd", "/etc/passwd", "..", ""} {
		if _, err := ParseHash(s); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseHash(%q) accepted", s)
		}
	}
	for i := range 50 {
		data := []byte{byte(i)}
		h := Sum(data)
		if err := d.Put(ctx, h, data); err != nil {
			t.Fatal(err)
		}
		if err := d.Delete(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	d.Delete(ctx, Hash{}) // zero hash: still inside root, just missing
	ents, _ := os.ReadDir(parent)
	if len(ents) != 2 {
		t.Fatalf("parent dir has %d entries, want store + outside", len(ents))
	}
	if b, _ := os.ReadFile(sentinel); string(b) != "keep" {
		t.Fatal("file outside root changed")
	}
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel != "." && rel != tempDir && !strings.HasPrefix(rel, tempDir+"/") && !isFanout(rel) {
			t.Errorf("unexpected path %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenDirMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := OpenDir(missing, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenDir(missing, false) err = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("OpenDir(create=false) created the dir")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := OpenDir(file, false); err == nil {
		t.Fatal("OpenDir on a file succeeded")
	}
}

func assertNoTemps(t *testing.T, d *DirStore) {
	t.Helper()
	filepath.WalkDir(d.Root(), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && filepath.Base(p)[0] == '.' {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

// tempFiles lists the temp files under root's tmp directory, in every
// session.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(filepath.Join(root, tempDir), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasPrefix(e.Name(), tempPrefix) {
			names = append(names, p)
		}
		return nil
	})
	return names
}
