package volume_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"

	"github.com/minio/minio-go/v7"
)

// snapshotStore is a store under test and how to delete one of its blocks
// behind blockfs's back (a lost metadata block).
type snapshotStore struct {
	spec   string
	oo     volume.Options
	remove func(t *testing.T, h blockstore.Hash)
}

func snapshotStores(t *testing.T) map[string]snapshotStore {
	dir := filepath.Join(t.TempDir(), "store")
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	return map[string]snapshotStore{
		"dir": {spec: dir, remove: func(t *testing.T, h blockstore.Hash) {
			x := h.String()
			if err := os.Remove(filepath.Join(dir, "blocks", x[:2], x)); err != nil {
				t.Fatal(err)
			}
		}},
		"s3": {spec: "s3://" + bucket + "/snap", oo: fstest.S3Options(m, m.Endpoint()), remove: func(t *testing.T, h blockstore.Hash) {
			x := h.String()
			if err := m.Client().RemoveObject(context.Background(), bucket, "snap/blocks/"+x[:2]+"/"+x, minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
	}
}

// headVersion is the version of meta/head: equal before and after means
// nothing was published.
func headVersion(t *testing.T, c *volume.Catalog) string {
	t.Helper()
	_, _, v, err := volume.HeadForTest(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func openVol(t *testing.T, s snapshotStore) *volume.Volume {
	t.Helper()
	vol, err := volume.Open(context.Background(), s.spec, s.oo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vol.Close() })
	return vol
}

// TestSnapshotsTagRollbackRepair, on a directory store and on MinIO: every
// import is a snapshot in the log; a tag names one; rollback to it (after
// a dry run that changes nothing) restores its files byte for byte while
// history stays; a running volume rebuilds and serves it at its next refresh;
// repair after losing one metadata block goes back to the newest whole
// snapshot and says what is lost.
func TestSnapshotsTagRollbackRepair(t *testing.T) {
	for name, s := range snapshotStores(t) {
		t.Run(name, func(t *testing.T) { testSnapshots(t, s) })
	}
}

func testSnapshots(t *testing.T, s snapshotStore) {
	ctx := context.Background()
	src := t.TempDir()
	x1, y1 := fstest.RandomBytes(1, 200<<10), fstest.RandomBytes(2, 5000)
	fstest.WriteFile(t, filepath.Join(src, "x"), x1, 0o644)
	fstest.WriteFile(t, filepath.Join(src, "y"), y1, 0o644)
	iopts := importer.Options{Chunking: smallChunks}
	fstest.ImportWith(t, s.spec, s.oo, src, "/data", iopts)
	cat := openCatalog(t, s.spec, s.oo)
	if _, err := cat.Tag(ctx, "v1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Tag(ctx, "v1", ""); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("tag twice: %v", err)
	}
	if _, err := cat.Tag(ctx, "../x", ""); !errors.Is(err, volume.ErrBadTagName) {
		t.Fatalf("bad tag name: %v", err)
	}

	// Snapshot 2: x changed, y deleted, z added.
	x2, z2 := fstest.RandomBytes(3, 100<<10), fstest.RandomBytes(4, 7000)
	fstest.WriteFile(t, filepath.Join(src, "x"), x2, 0o644)
	os.Remove(filepath.Join(src, "y"))
	fstest.WriteFile(t, filepath.Join(src, "z"), z2, 0o644)
	iopts.Delete = true
	fstest.ImportWith(t, s.spec, s.oo, src, "/data", iopts)
	running := openVol(t, s)

	snaps, err := cat.Snapshots(ctx)
	if err != nil || len(snaps) != 2 || snaps[0].Generation <= snaps[1].Generation {
		t.Fatalf("snapshots = %+v, %v", snaps, err)
	}
	if snaps[1].Op != volume.OpPublish || len(snaps[1].Tags) != 1 || snaps[1].Tags[0] != "v1" || snaps[0].SegmentsAdded == 0 || snaps[0].Host == "" {
		t.Fatalf("snapshots = %+v", snaps)
	}

	before := headVersion(t, cat)
	ch, err := cat.Rollback(ctx, "v1", true)
	if err != nil || ch.Published != nil || ch.To.Generation != snaps[1].Generation || len(ch.Undone) != 1 || len(ch.Dropped) == 0 {
		t.Fatalf("rollback --dry-run = %+v, %v", ch, err)
	}
	if headVersion(t, cat) != before {
		t.Fatal("dry run changed meta/head")
	}
	if ch, err = cat.Rollback(ctx, "v1", false); err != nil || ch.Published == nil || ch.Published.Op != volume.OpRollback {
		t.Fatalf("rollback = %+v, %v", ch, err)
	}
	vol := openVol(t, s)
	if !bytes.Equal(fstest.ReadBack(t, vol, "/data/x"), x1) || !bytes.Equal(fstest.ReadBack(t, vol, "/data/y"), y1) {
		t.Fatal("rollback did not restore the files of v1")
	}
	if _, err := vol.Tree.Lookup("/data/z"); !errors.Is(err, tree.ErrNotExist) {
		t.Fatalf("file added after v1 still there: %v", err)
	}
	// A running volume without writes of its own rebuilds its metadata and
	// serves the restored snapshot.
	if changed, err := running.Refresh(ctx); err != nil || !changed {
		t.Fatalf("running volume's refresh after rollback = %v, %v", changed, err)
	}
	if !bytes.Equal(fstest.ReadBack(t, running, "/data/x"), x1) || !bytes.Equal(fstest.ReadBack(t, running, "/data/y"), y1) {
		t.Fatal("running volume does not serve the rolled-back snapshot")
	}
	if _, err := running.Tree.Lookup("/data/z"); !errors.Is(err, tree.ErrNotExist) {
		t.Fatalf("running volume still has the file added after v1: %v", err)
	}
	if st := running.MetaStats(); st.Rebuilds != 1 || st.Generation != ch.Published.Generation {
		t.Fatalf("meta stats after the rollback: %+v", st)
	}
	snaps, err = cat.Snapshots(ctx)
	if err != nil || len(snaps) != 3 || snaps[0].Target != snaps[2].Generation {
		t.Fatalf("history after rollback = %+v, %v", snaps, err)
	}
	// Rolling forward again is a rollback too: history is never lost.
	if _, err := cat.Rollback(ctx, itoa(snaps[1].Generation), false); err != nil {
		t.Fatal(err)
	}
	if vol := openVol(t, s); !bytes.Equal(fstest.ReadBack(t, vol, "/data/z"), z2) {
		t.Fatal("roll forward did not restore z")
	}

	// Lose one block of the newest segment: Open fails, repair fixes it.
	w := fstest.RandomBytes(5, 3000)
	fstest.WriteFile(t, filepath.Join(src, "w"), w, 0o644)
	iopts.Delete = false
	fstest.ImportWith(t, s.spec, s.oo, src, "/data", iopts)
	m, _, _, err := volume.HeadForTest(ctx, cat)
	if err != nil {
		t.Fatal(err)
	}
	last := m.Segments[len(m.Segments)-1]
	s.remove(t, last.Blocks[0].Hash)
	if _, err := volume.Open(ctx, s.spec, s.oo); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("Open with a lost metadata block = %v", err)
	}
	before = headVersion(t, cat)
	ch, err = cat.Repair(ctx, true)
	if err != nil || ch.Published != nil || len(ch.Damaged) != 1 || !strings.Contains(ch.Damaged[0].Paths[0], last.ID) {
		t.Fatalf("repair --dry-run = %+v, %v", ch, err)
	}
	if headVersion(t, cat) != before {
		t.Fatal("repair dry run changed meta/head")
	}
	if ch, err = cat.Repair(ctx, false); err != nil || ch.Published == nil || ch.To.Generation != m.Generation-1 {
		t.Fatalf("repair = %+v, %v", ch, err)
	}
	vol = openVol(t, s)
	if !bytes.Equal(fstest.ReadBack(t, vol, "/data/z"), z2) || !bytes.Equal(fstest.ReadBack(t, vol, "/data/x"), x2) {
		t.Fatal("repair lost files of the last whole snapshot")
	}
	if _, err := vol.Tree.Lookup("/data/w"); !errors.Is(err, tree.ErrNotExist) {
		t.Fatalf("file of the damaged snapshot: %v", err)
	}
	if err := cat.DeleteTag(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if tags, err := cat.Tags(ctx); err != nil || len(tags) != 0 {
		t.Fatalf("tags after delete = %v, %v", tags, err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestMountAt, on a directory store and on MinIO: a real mount of a
// volume opened --at a tag serves that version's bytes while newer imports
// land, never shows their files and never changes on refresh; a normal
// mount shows them.
func TestMountAt(t *testing.T) {
	for name, s := range snapshotStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			src := t.TempDir()
			old := fstest.RandomBytes(11, 150<<10)
			fstest.WriteFile(t, filepath.Join(src, "f"), old, 0o644)
			iopts := importer.Options{Chunking: smallChunks}
			fstest.ImportWith(t, s.spec, s.oo, src, "/d", iopts)
			cat := openCatalog(t, s.spec, s.oo)
			if _, err := cat.Tag(ctx, "pinned", ""); err != nil {
				t.Fatal(err)
			}
			oo := s.oo
			oo.At = "pinned"
			at := fstest.MountWith(t, s.spec, oo, mount.Options{})

			newer := fstest.RandomBytes(12, 90<<10)
			fstest.WriteFile(t, filepath.Join(src, "f"), newer, 0o644)
			fstest.WriteFile(t, filepath.Join(src, "g"), []byte("new\n"), 0o644)
			fstest.ImportWith(t, s.spec, s.oo, src, "/d", iopts)
			if changed, err := at.Vol.Refresh(ctx); changed || err != nil {
				t.Fatalf("pinned refresh = %v, %v", changed, err)
			}
			if err := at.Vol.Publish(ctx); err == nil {
				t.Error("a pinned volume published")
			}
			if got, err := os.ReadFile(at.Path("d/f")); err != nil || !bytes.Equal(got, old) {
				t.Fatalf("--at mount: %d bytes, %v; want the tagged version", len(got), err)
			}
			if _, err := os.Stat(at.Path("d/g")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("--at mount shows a newer file: %v", err)
			}
			cur := fstest.MountWith(t, s.spec, s.oo, mount.Options{})
			if got, err := os.ReadFile(cur.Path("d/f")); err != nil || !bytes.Equal(got, newer) {
				t.Fatalf("normal mount: %d bytes, %v; want the newest", len(got), err)
			}
			if _, err := os.Stat(cur.Path("d/g")); err != nil {
				t.Fatal(err)
			}
			oo.At = "nope"
			if _, err := volume.Open(ctx, s.spec, oo); !errors.Is(err, volume.ErrNoSnapshot) {
				t.Fatalf("--at an unknown tag: %v", err)
			}
		})
	}
}

// TestRepairFromTags, on a directory store and on MinIO: when the block of
// the current manifest (which holds the history) is lost, or meta/head is
// garbled, repair restores the newest tagged snapshot that is whole.
func TestRepairFromTags(t *testing.T) {
	for name, s := range snapshotStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			src := t.TempDir()
			a := fstest.RandomBytes(21, 70<<10)
			fstest.WriteFile(t, filepath.Join(src, "a"), a, 0o644)
			iopts := importer.Options{Chunking: smallChunks}
			fstest.ImportWith(t, s.spec, s.oo, src, "/d", iopts)
			cat := openCatalog(t, s.spec, s.oo)
			if _, err := cat.Tag(ctx, "good", ""); err != nil {
				t.Fatal(err)
			}
			fstest.WriteFile(t, filepath.Join(src, "b"), []byte("later\n"), 0o644)
			fstest.ImportWith(t, s.spec, s.oo, src, "/d", iopts)
			_, locs, _, err := volume.HeadForTest(ctx, cat)
			if err != nil {
				t.Fatal(err)
			}
			s.remove(t, locs[0].Hash)
			if _, err := cat.Snapshots(ctx); err == nil {
				t.Fatal("log of a store whose manifest is lost worked")
			}
			ch, err := cat.Repair(ctx, true)
			if err != nil || ch.Published != nil || ch.To.Generation != 1 || len(ch.Damaged) != 1 {
				t.Fatalf("repair --dry-run = %+v, %v", ch, err)
			}
			if ch, err = cat.Repair(ctx, false); err != nil || ch.Published == nil || ch.Published.Generation != 2 {
				t.Fatalf("repair = %+v, %v", ch, err)
			}
			vol := openVol(t, s)
			if !bytes.Equal(fstest.ReadBack(t, vol, "/d/a"), a) {
				t.Fatal("tagged file not restored")
			}
			snaps, err := cat.Snapshots(ctx)
			if err != nil || len(snaps) != 2 || snaps[0].Op != volume.OpRepair || snaps[1].Generation != 1 {
				t.Fatalf("log after repair = %+v, %v", snaps, err)
			}
		})
	}
}

// TestLegacyManifest: a manifest written before snapshots (no snapshot, no
// history) still opens, lists as a legacy snapshot with no parent, is
// recorded in the history of the next publish, and can be rolled back to.
func TestLegacyManifest(t *testing.T) {
	ctx := context.Background()
	a := fstest.RandomBytes(31, 20<<10)
	store := fstest.StoreWithFile(t, "/d", a, smallChunks)
	cat := openCatalog(t, store, volume.Options{})
	m, _, version, err := volume.HeadForTest(ctx, cat)
	if err != nil {
		t.Fatal(err)
	}
	m.Snapshot, m.History, m.Generation = nil, nil, 5 // as the old writer left it
	if err := volume.PublishRawForTest(ctx, cat, m, version); err != nil {
		t.Fatal(err)
	}
	snaps, err := cat.Snapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].Generation != 5 || snaps[0].Op != volume.OpLegacy {
		t.Fatalf("legacy manifest lists as %+v, %v", snaps, err)
	}
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "g"), []byte("new\n"), 0o644)
	fstest.ImportInto(t, store, src, "/e", smallChunks)
	snaps, err = cat.Snapshots(ctx)
	if err != nil || len(snaps) != 2 || snaps[0].Generation != 6 || snaps[1].Op != volume.OpLegacy {
		t.Fatalf("after a publish: %+v, %v", snaps, err)
	}
	if _, err := cat.Rollback(ctx, "5", false); err != nil {
		t.Fatal(err)
	}
	vol := openVol(t, snapshotStore{spec: store})
	if !bytes.Equal(fstest.ReadBack(t, vol, "/d/f"), a) {
		t.Fatal("legacy snapshot's file")
	}
	if _, err := vol.Tree.Lookup("/e/g"); !errors.Is(err, tree.ErrNotExist) {
		t.Fatalf("file published after the legacy snapshot: %v", err)
	}
}
