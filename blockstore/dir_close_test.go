package blockstore

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestDirCloseEndsSession: Close removes the store's temp session and
// releases its lock, so nothing of the store stays open (a filesystem
// holding it could not be unmounted otherwise); the store can still be
// read, and a later write starts a new session.
func TestDirCloseEndsSession(t *testing.T) {
	root := filepath.Join(t.TempDir(), "s")
	d, err := OpenDir(root, true)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("one block")
	loc := LocatorOf(data)
	if err := d.Put(context.Background(), loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	session := d.ownSession()
	if session == "" {
		t.Fatal("a write made no temp session")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(session); !os.IsNotExist(err) {
		t.Fatalf("session %s after Close: %v, want it gone", session, err)
	}
	if fds := openFilesUnder(t, root); len(fds) != 0 {
		t.Fatalf("files of the store still open after Close: %v", fds)
	}
	buf := make([]byte, loc.Size)
	if _, err := d.Get(context.Background(), loc, buf); err != nil {
		t.Fatalf("Get after Close: %v", err)
	}
	other := []byte("another block")
	if err := d.Put(context.Background(), LocatorOf(other).Hash, other); err != nil {
		t.Fatalf("Put after Close: %v", err)
	}
	if s := d.ownSession(); s == "" || s == session {
		t.Fatalf("the write after Close used session %q (old %q)", s, session)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// openFilesUnder lists this process's open file descriptors that point
// under dir.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && len(target) > len(dir) && target[:len(dir)+1] == dir+"/" {
			open = append(open, target)
		}
	}
	return open
}
