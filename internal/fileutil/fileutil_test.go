package fileutil

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A held lock refuses a second holder (another open file, even in this
// process) until it is closed.
func TestLockFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "LOCK")
	a, err := LockFile(name, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockFile(name, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	a.Close()
	b, err := LockFile(name, true)
	if err != nil {
		t.Fatal("lock after release:", err)
	}
	b.Close()
}

// WriteFileDurable leaves the new content under final, with its mode, and
// no temp file behind; a failed rename leaves nothing either.
func TestWriteFileDurable(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(dir, "f")
	if err := WriteFileDurable(tmp, ".t-", 0o444, final, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(final); err != nil || !bytes.Equal(b, []byte("hello")) {
		t.Fatalf("read back %q, %v", b, err)
	}
	if fi, err := os.Stat(final); err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	// The destination directory does not exist: the rename fails.
	if err := WriteFileDurable(tmp, ".t-", 0o444, filepath.Join(dir, "no", "f"), []byte("x")); err == nil {
		t.Fatal("rename into a missing directory succeeded")
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("temp files left behind: %v", ents)
	}
}
