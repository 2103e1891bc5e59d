package volume_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/objects"
)

// openWith opens s with CompactAbove set (and closes it with the test).
func openWith(t *testing.T, s snapshotStore, compactAbove int) *volume.Volume {
	t.Helper()
	oo := s.oo
	oo.Create, oo.CompactAbove = true, compactAbove
	vol, err := volume.Open(context.Background(), s.spec, oo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vol.Close() })
	return vol
}

// writeLinks writes symlinks dir/<prefix><i> (their targets say which) and
// deletes paths del, then publishes: one small import.
func writeLinks(t *testing.T, vol *volume.Volume, dir, prefix string, n int, del ...string) {
	t.Helper()
	if err := publishLinks(vol, dir, prefix, n, del...); err != nil {
		t.Fatal(err)
	}
}

// publishLinks is writeLinks returning its error (for goroutines).
func publishLinks(vol *volume.Volume, dir, prefix string, n int, del ...string) error {
	if err := writeLinksNoPublish(vol, dir, prefix, n, del...); err != nil {
		return err
	}
	return vol.Publish(context.Background())
}

// writeLinksNoPublish writes what writeLinks publishes.
func writeLinksNoPublish(vol *volume.Volume, dir, prefix string, n int, del ...string) error {
	entries := []objects.Entry{tree.Entry(dir, &tree.Node{Kind: tree.KindDir, Mode: 0o755})}
	for i := range n {
		p := fmt.Sprintf("%s/%s%d", dir, prefix, i)
		entries = append(entries, tree.Entry(p, &tree.Node{Kind: tree.KindSymlink, Mode: 0o777, Target: "t:" + p, Size: int64(len("t:" + p))}))
	}
	for _, p := range del {
		entries = append(entries, tree.DeleteEntry(p))
	}
	return vol.Meta.MultiWrite(entries)
}

// dumpTree renders every node of vol's tree with its version.
func dumpTree(t *testing.T, vol *volume.Volume) string {
	t.Helper()
	var sb strings.Builder
	if err := vol.Tree.Walk("/", func(p string, n *tree.Node) error {
		fmt.Fprintf(&sb, "%s %v %o %q @%d\n", p, n.Kind, n.Mode, n.Target, n.Version)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// TestCompact, on a directory store and on MinIO: compaction replaces the
// segments of many imports by one, the tree (versions included) is
// unchanged for a new volume, a running reader rebuilds to the same tree,
// a running writer carries on publishing, and a snapshot from before the
// compaction still mounts.
func TestCompact(t *testing.T) {
	for name, s := range snapshotStores(t) {
		t.Run(name, func(t *testing.T) { testCompact(t, s) })
	}
}

func testCompact(t *testing.T, s snapshotStore) {
	ctx := context.Background()
	for i := range 12 {
		var del []string
		if i > 0 {
			del = []string{fmt.Sprintf("/d%d/a0", i-1)}
		}
		writeLinks(t, openWith(t, s, -1), fmt.Sprintf("/d%d", i), "a", 3, del...)
	}
	cat := openCatalog(t, s.spec, s.oo)
	if _, err := cat.Tag(ctx, "before", ""); err != nil {
		t.Fatal(err)
	}
	reader := openWith(t, s, -1)
	writer := openWith(t, s, -1)
	writeLinks(t, writer, "/w", "x", 2)
	want := dumpTree(t, openWith(t, s, -1))

	c, err := openWith(t, s, -1).Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.SegmentsBefore != 13 || c.SegmentsAfter != 1 || c.Published == nil || c.Published.Op != volume.OpCompact || c.Written.Tombstones != 11 {
		t.Fatalf("compact = %+v (snapshot %+v)", c, c.Published)
	}
	fresh := openWith(t, s, -1)
	if got := dumpTree(t, fresh); got != want {
		t.Fatalf("tree after compaction:\n%s\nwant\n%s", got, want)
	}
	if st := fresh.MetaStats(); st.Segments != 1 {
		t.Errorf("a new volume ingested %d segments, want 1", st.Segments)
	}
	if changed, err := reader.Refresh(ctx); err != nil || !changed {
		t.Fatalf("reader refresh after compaction = %v, %v", changed, err)
	}
	if got := dumpTree(t, reader); got != want || reader.MetaStats().Rebuilds != 1 {
		t.Fatalf("reader after its rebuild (%d rebuilds):\n%s\nwant\n%s", reader.MetaStats().Rebuilds, got, want)
	}
	if _, err := writer.Refresh(ctx); err != nil {
		t.Fatalf("writer refresh after compaction: %v", err)
	}
	writeLinks(t, writer, "/w", "y", 1, "/w/x0")
	after := openWith(t, s, -1)
	if _, err := after.Tree.Lookup("/w/y0"); err != nil {
		t.Fatalf("the writer's publish after the compaction: %v", err)
	}
	if _, err := after.Tree.Lookup("/w/x0"); !errors.Is(err, tree.ErrNotExist) {
		t.Fatalf("the writer's delete after the compaction: %v", err)
	}
	oo := s.oo
	oo.At = "before"
	old, err := volume.Open(ctx, s.spec, oo)
	if err != nil {
		t.Fatalf("snapshot before the compaction: %v", err)
	}
	defer old.Close()
	if _, err := old.Tree.Lookup("/d11/a2"); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Tree.Lookup("/w/x0"); !errors.Is(err, tree.ErrNotExist) {
		t.Fatalf("snapshot before: %v", err)
	}
}

// TestCompactRacesImports, on a directory store and on MinIO: two imports
// publishing after every batch, with automatic compaction after 3
// segments, race a loop of compactions: every file of both survives, and
// deletes stay deleted.
func TestCompactRacesImports(t *testing.T) {
	for name, s := range snapshotStores(t) {
		t.Run(name, func(t *testing.T) { testCompactRaces(t, s) })
	}
}

func testCompactRaces(t *testing.T, s snapshotStore) {
	ctx := context.Background()
	const rounds = 12
	var wg sync.WaitGroup
	done := make(chan struct{})
	for _, who := range []string{"a", "b"} {
		wg.Add(1)
		vol := openWith(t, s, 3)
		go func() {
			defer wg.Done()
			for i := range rounds {
				var del []string
				if i > 0 {
					del = []string{fmt.Sprintf("/%s/r%d/f0", who, i-1)}
				}
				if err := publishLinks(vol, fmt.Sprintf("/%s/r%d", who, i), "f", 3, del...); err != nil {
					t.Errorf("import %s round %d: %v", who, i, err)
					return
				}
			}
		}()
	}
	compactions := 0
	var cerr error
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			vol, err := volume.Open(ctx, s.spec, s.oo)
			if errors.Is(err, volume.ErrNoMetadata) || (err != nil && strings.Contains(err.Error(), "no blockfs store")) {
				continue
			}
			if err != nil {
				cerr = err
				return
			}
			c, err := vol.Compact(ctx)
			vol.Close()
			if err != nil {
				cerr = err
				return
			}
			if c.Published != nil {
				compactions++
			}
		}
	}()
	wg.Wait()
	close(done)
	cwg.Wait()
	if cerr != nil {
		t.Fatal(cerr)
	}
	if compactions == 0 {
		t.Log("the compaction loop never compacted (the imports' own compactions did)")
	}
	vol := openWith(t, s, -1)
	for _, who := range []string{"a", "b"} {
		for i := range rounds {
			for f := range 3 {
				p := fmt.Sprintf("/%s/r%d/f%d", who, i, f)
				_, err := vol.Tree.Lookup(p)
				if deleted := f == 0 && i < rounds-1; deleted != errors.Is(err, tree.ErrNotExist) || (!deleted && err != nil) {
					t.Errorf("%s: %v (deleted: %v)", p, err, deleted)
				}
			}
		}
	}
	cat := openCatalog(t, s.spec, s.oo)
	snaps, err := cat.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, sn := range snaps {
		ops[sn.Op]++
	}
	if ops[volume.OpPublish] != 2*rounds || ops[volume.OpCompact] == 0 {
		t.Errorf("snapshots by op: %v", ops)
	}
	if st := vol.MetaStats(); st.Segments > 5 {
		t.Errorf("%d segments after automatic compaction above 3", st.Segments)
	}
}
