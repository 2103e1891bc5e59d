package blockstore

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// TestDirDeferredSync: pending blocks are visible to the writer at once,
// to other openers of the directory only after Flush, and a "crash" before
// Flush leaves no block under its name.
func TestDirDeferredSync(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "store")
	w, err := OpenDir(root, true)
	if err != nil {
		t.Fatal(err)
	}
	w.DeferSync()
	other, err := OpenDir(root, false) // another process, as it were
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("deferred "), 1000)
	loc := LocatorOf(data)
	if err := w.Put(ctx, loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Put(ctx, loc.Hash, data); err != nil { // twice: still one
		t.Fatal(err)
	}
	if ok, _ := w.Has(ctx, loc.Hash); !ok {
		t.Error("writer does not see its pending block")
	}
	buf := make([]byte, loc.Size)
	if _, err := w.Get(ctx, loc, buf); err != nil || !bytes.Equal(buf, data) {
		t.Errorf("writer Get of a pending block: %v", err)
	}
	if ok, _ := other.Has(ctx, loc.Hash); ok {
		t.Error("another opener sees an unflushed block")
	}
	// A crash now: the block is only a temp file, never under its name.
	crashed := tempFiles(t, root)
	if len(crashed) != 1 {
		t.Fatalf("%d temp files before flush, want 1", len(crashed))
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := other.Has(ctx, loc.Hash); !ok {
		t.Error("flushed block not visible to another opener")
	}
	if _, err := other.Get(ctx, loc, buf); err != nil || !bytes.Equal(buf, data) {
		t.Errorf("Get after flush: %v", err)
	}
	if left := tempFiles(t, root); len(left) != 0 {
		t.Errorf("%d temp files left after flush", len(left))
	}
	if err := w.Flush(ctx); err != nil { // nothing pending
		t.Fatal(err)
	}
	// Delete of a pending block removes its temp file.
	gone := []byte("never flushed")
	if err := w.Put(ctx, Sum(gone), gone); err != nil {
		t.Fatal(err)
	}
	if err := w.Delete(ctx, Sum(gone)); err != nil {
		t.Fatal(err)
	}
	if left := tempFiles(t, root); len(left) != 0 {
		t.Errorf("delete of a pending block left %d temp files", len(left))
	}
}
