package volume_test

import (
	"context"
	"path/filepath"
	"testing"

	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/volume"
)

// TestOpenAt: OpenAt serves the tag's version, pinned, Tags lists the
// tags, and the volume OpenAt was called on still serves and refreshes the
// current version once the pinned one is closed. (A directory store's
// Close does not stop reads, so that the shared store stays open is not
// shown here: the borrowed flag in Close is what keeps it.)
func TestOpenAt(t *testing.T) {
	ctx := context.Background()
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "f"), []byte("one\n"), 0o644)
	fstest.ImportWith(t, store, volume.Options{}, src, "/", importer.Options{})
	cat, err := volume.OpenCatalog(ctx, store, volume.Options{}.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, err := cat.Tag(ctx, "first", ""); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, filepath.Join(src, "f"), []byte("two\n"), 0o644)
	fstest.ImportWith(t, store, volume.Options{}, src, "/", importer.Options{})

	vol, err := volume.Open(ctx, store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	tags, err := vol.Tags(ctx)
	if err != nil || len(tags) != 1 || tags[0].Name != "first" {
		t.Fatalf("Tags = %+v, %v; want the one tag first", tags, err)
	}
	pinned, err := vol.OpenAt(ctx, "first")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(fstest.ReadBack(t, pinned, "/f")); got != "one\n" {
		t.Errorf("pinned /f = %q, want the tagged version", got)
	}
	if pinned.At() == nil || pinned.At().Generation != tags[0].Generation {
		t.Errorf("pinned At = %+v, want generation %d", pinned.At(), tags[0].Generation)
	}
	if err := pinned.Close(); err != nil {
		t.Fatal(err)
	}
	if got := string(fstest.ReadBack(t, vol, "/f")); got != "two\n" {
		t.Errorf("/f after closing the pinned volume = %q, want the current version", got)
	}
	if _, err := vol.Refresh(ctx); err != nil {
		t.Errorf("refresh after closing the pinned volume: %v", err)
	}
}
