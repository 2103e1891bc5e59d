package importer_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
)

// TestTruncatedSourceIsAnError: the importer reads files through mmap, and
// touching a mapping past a file's new end raises SIGBUS. guardFault must
// turn that into ErrChanged, both in Go code (the chunker) and in the
// SHA-256 assembly, instead of crashing the import.
func TestTruncatedSourceIsAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "shrinks")
	fstest.WriteFile(t, p, fstest.RandomBytes(81, 1<<20), 0o644)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, 1<<20, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(data)
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	for name, touch := range map[string]func(){
		"chunker": func() { chunker.Cut(data, chunker.DefaultConfig()) },
		"sha256":  func() { blockstore.Sum(data) },
	} {
		err := func() (err error) {
			defer importer.GuardFault(p, &err)()
			touch()
			return nil
		}()
		if !errors.Is(err, importer.ErrChanged) {
			t.Errorf("%s over a truncated mapping: %v, want ErrChanged", name, err)
		}
	}
}
