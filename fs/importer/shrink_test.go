package importer_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
)

// TestShrunkSourceIsChanged: a file that is shorter when read than when it
// was opened changed under the import (ErrChanged, so it is read again),
// and what was read of it is queued, never bytes past its end.
func TestShrunkSourceIsChanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "shrinks")
	fstest.WriteFile(t, p, fstest.RandomBytes(81, 4<<20), 0o644)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(p, 1<<20); err != nil {
		t.Fatal(err)
	}
	queued, err := importer.QueueBlocksOf(f, 4<<20)
	if !errors.Is(err, importer.ErrChanged) {
		t.Fatalf("reading a file that shrank from 4 MiB to 1 MiB: %v, want ErrChanged", err)
	}
	if queued != 1<<20 {
		t.Errorf("queued %d bytes of the 1 MiB the file now holds", queued)
	}
}
