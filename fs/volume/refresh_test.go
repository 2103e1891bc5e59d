package volume_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"blockfs/blockstore/storeurl"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/objects"
)

// publishEntries writes entries to the store at spec from a volume of its
// own and publishes them, as another machine would.
func publishEntries(t *testing.T, spec string, entries ...objects.Entry) {
	t.Helper()
	v, err := volume.Open(context.Background(), spec, volume.Options{Options: storeurl.Options{Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.Meta.MultiWrite(entries); err != nil {
		t.Fatal(err)
	}
	if err := v.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRefreshNotifyReportsChangedPaths: a refresh reports exactly the paths
// the segments it ingested wrote or deleted, each applied by the time it is
// reported, and nothing when nothing was published.
func TestRefreshNotifyReportsChangedPaths(t *testing.T) {
	ctx := context.Background()
	spec := filepath.Join(t.TempDir(), "store")
	dir := &tree.Node{Kind: tree.KindDir, Mode: 0o755}
	publishEntries(t, spec, tree.Entry("/d", dir), tree.Entry("/d/a", dir), tree.Entry("/d/b", dir), tree.Entry("/d/c", dir))
	v, err := volume.Open(ctx, spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	publishEntries(t, spec, tree.Entry("/d/a", &tree.Node{Kind: tree.KindDir, Mode: 0o700}), tree.DeleteEntry("/d/b"))
	var got []string
	changed, err := v.RefreshNotify(ctx, func(p string) {
		n, err := v.Tree.Lookup(p)
		switch p {
		case "/d/a":
			if err != nil || n.Mode != 0o700 {
				t.Errorf("%s reported before it was applied: %v %v", p, n, err)
			}
		case "/d/b":
			if err == nil {
				t.Errorf("%s reported before its delete was applied", p)
			}
		}
		got = append(got, p)
	})
	if err != nil || !changed {
		t.Fatalf("RefreshNotify: %v, %v", changed, err)
	}
	slices.Sort(got)
	if want := []string{"/d/a", "/d/b"}; !slices.Equal(slices.Compact(got), want) {
		t.Errorf("changed paths %q, want %q", got, want)
	}
	got = nil
	if changed, err := v.RefreshNotify(ctx, func(p string) { got = append(got, p) }); err != nil || changed || got != nil {
		t.Errorf("refresh with nothing published: %v, %v, paths %q", changed, err, got)
	}
}
