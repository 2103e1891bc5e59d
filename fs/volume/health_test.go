package volume_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/volume"
)

// TestVanishedManifest: a store that no longer holds the manifest a volume
// ingested fails the refresh with ErrGenerationBackwards, shown in
// MetaStats, and the generation stays where it was; a store that comes
// back heals it.
func TestVanishedManifest(t *testing.T) {
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "a"), fstest.RandomBytes(1, 1000), 0o644)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/v", chunker.Config{Fixed: true, Avg: 256 << 10})
	ctx := context.Background()
	vol, err := volume.Open(ctx, store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	before := vol.MetaStats()
	if before.Generation == 0 || before.LastError != "" {
		t.Fatalf("fresh volume: %+v", before)
	}
	refs := filepath.Join(store, "blocks", "refs")
	if err := os.Rename(refs, refs+".gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := vol.Refresh(ctx); !errors.Is(err, volume.ErrGenerationBackwards) {
		t.Fatalf("refresh of a store without its manifest: %v, want ErrGenerationBackwards", err)
	}
	st := vol.MetaStats()
	if st.Generation != before.Generation || st.RefreshErrors != 1 || !strings.Contains(st.LastError, "no longer holds the manifest") {
		t.Fatalf("after the manifest vanished: %+v", st)
	}
	if err := os.Rename(refs+".gone", refs); err != nil {
		t.Fatal(err)
	}
	if _, err := vol.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if st := vol.MetaStats(); st.LastError != "" || st.Generation != before.Generation {
		t.Fatalf("store back: %+v", st)
	}
}
