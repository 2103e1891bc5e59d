package blockstore

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
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

func TestDirRoundTrip(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	data := []byte("some block content")
	loc := LocatorOf(data)
	if err := d.Put(ctx, loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.Has(ctx, loc.Hash); !ok || err != nil {
		t.Fatalf("Has = %v, %v", ok, err)
	}
	dst := make([]byte, loc.Size+10)
	n, err := d.Get(ctx, loc, dst)
	if err != nil || !bytes.Equal(dst[:n], data) {
		t.Fatalf("Get = %q, %v", dst[:n], err)
	}
	want := filepath.Join(d.Root(), loc.Hash.String()[:2], loc.Hash.String())
	if fi, err := os.Stat(want); err != nil || fi.Size() != loc.Size {
		t.Fatalf("block file %s: %v", want, err)
	}
	// Empty block.
	empty := LocatorOf(nil)
	if err := d.Put(ctx, empty.Hash, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Get(ctx, empty, nil); n != 0 || err != nil {
		t.Fatalf("Get(empty) = %d, %v", n, err)
	}
	// Short buffer, wrong size.
	if _, err := d.Get(ctx, loc, dst[:3]); err == nil {
		t.Fatal("Get into short buffer succeeded")
	}
	if _, err := d.Get(ctx, Locator{loc.Hash, loc.Size - 1}, dst); !errors.Is(err, ErrCorrupt) {
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

func TestDirMissing(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	loc := LocatorOf([]byte("absent"))
	if _, err := d.Get(ctx, loc, make([]byte, loc.Size)); !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get(missing) err = %v, want ErrNotFound", err)
	}
	if ok, err := d.Has(ctx, loc.Hash); ok || err != nil {
		t.Fatalf("Has(missing) = %v, %v", ok, err)
	}
	if err := d.Delete(ctx, loc.Hash); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete(missing) err = %v, want ErrNotFound", err)
	}
}

func TestDirListAndDelete(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	var want []string
	for i := range 20 {
		data := bytes.Repeat([]byte{byte(i)}, i)
		loc := LocatorOf(data)
		if err := d.Put(ctx, loc.Hash, data); err != nil {
			t.Fatal(err)
		}
		want = append(want, loc.String())
	}
	list := func() []string {
		var got []string
		if err := d.List(ctx, func(l Locator) error { got = append(got, l.String()); return nil }); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		return got
	}
	sort.Strings(want)
	if got := list(); !slices.Equal(got, want) {
		t.Fatalf("List = %v\nwant %v", got, want)
	}
	// fn's error stops the listing and comes back.
	stop := errors.New("stop")
	calls := 0
	if err := d.List(ctx, func(Locator) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("List with failing fn = %v after %d calls", err, calls)
	}
	gone, _ := ParseLocator(want[0])
	if err := d.Delete(ctx, gone.Hash); err != nil {
		t.Fatal(err)
	}
	if ok, _ := d.Has(ctx, gone.Hash); ok {
		t.Fatal("deleted block still there")
	}
	if got := list(); !slices.Equal(got, want[1:]) {
		t.Fatalf("List after delete = %v", got)
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

func TestCountingStore(t *testing.T) {
	ctx := context.Background()
	c := NewCountingStore(newDir(t))
	data := []byte("counted")
	loc := LocatorOf(data)
	if err := c.Put(ctx, loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, loc.Size)
	for range 3 {
		if _, err := c.Get(ctx, loc, buf); err != nil {
			t.Fatal(err)
		}
	}
	c.Get(ctx, LocatorOf([]byte("missing")), buf)
	if c.Gets() != 4 || c.GetBytes() != 3*loc.Size || c.GetsOf(loc.Hash) != 3 {
		t.Fatalf("counts = %d gets, %d bytes, %d of hash", c.Gets(), c.GetBytes(), c.GetsOf(loc.Hash))
	}
	c.Reset()
	if c.Gets() != 0 || c.GetsOf(loc.Hash) != 0 {
		t.Fatal("Reset did not zero")
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
