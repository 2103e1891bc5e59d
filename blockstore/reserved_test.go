package blockstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRefNamesCannotReachStoreFiles is issue 22 item 13: the DirStore's
// refs/.lock (and any "."-file) is not a ref: it cannot be read or
// replaced through GetRef and PutRef.
func TestRefNamesCannotReachStoreFiles(t *testing.T) {
	ctx := context.Background()
	d, err := OpenDir(filepath.Join(t.TempDir(), "store"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutRef(ctx, "meta/head", []byte("head"), ""); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(d.Root(), refDir, ".lock")
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("PutRef left no lock file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d.Root(), refDir, "meta", ".tmp-1"), []byte("temp"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".lock", "meta/.tmp-1", ".tmp-1", "meta/.x", "-x", "_x", "meta/-x", ".", "..", "meta/.."} {
		if data, _, err := d.GetRef(ctx, name); !errors.Is(err, ErrMalformed) {
			t.Errorf("GetRef(%q) = %q, %v; want ErrMalformed", name, data, err)
		}
		if _, err := d.PutRef(ctx, name, []byte("x"), ""); !errors.Is(err, ErrMalformed) {
			t.Errorf("PutRef(%q): %v; want ErrMalformed", name, err)
		}
	}
	if b, err := os.ReadFile(lock); err != nil || len(b) != 0 {
		t.Errorf("lock file after the attempts: %q, %v; want it empty and there", b, err)
	}
	for _, name := range []string{"meta/head", "a.b", "x-1", "0/y_z"} {
		if err := CheckRefName(name); err != nil {
			t.Errorf("CheckRefName(%q): %v", name, err)
		}
	}
}

// TestDirStoreWithoutTmp is issue 22 item 13: a store directory without
// its tmp folder (made by hand, or cleaned) failed every write; the store
// makes tmp when it is missing, for blocks and refs, at open or not.
func TestDirStoreWithoutTmp(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "store")
	if _, err := OpenDir(root, true); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, tempDir)
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(root, false)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("block"), 100)
	loc := LocatorOf(data)
	if err := d.Put(ctx, loc.Hash, data); err != nil {
		t.Fatalf("Put with no tmp folder: %v", err)
	}
	got := make([]byte, loc.Size)
	if _, err := d.Get(ctx, loc, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after Put: %v", err)
	}
	// Removed while the store is open (rm -rf by an operator, the
	// writer's session with it): the next write makes both again.
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	data2 := append(data, '!')
	if err := d.Put(ctx, LocatorOf(data2).Hash, data2); err != nil {
		t.Fatalf("Put after tmp was removed: %v", err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutRef(ctx, "meta/head", []byte("x"), ""); err != nil {
		t.Fatalf("PutRef after tmp was removed: %v", err)
	}
	if fi, err := os.Stat(tmp); err != nil || !fi.IsDir() {
		t.Fatalf("tmp after the writes: %v", err)
	}
}
