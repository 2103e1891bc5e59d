package volume_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

var smallChunks = chunker.Config{Fixed: true, Avg: 64 << 10}

func openCatalog(t *testing.T, spec string, oo volume.Options) *volume.Catalog {
	t.Helper()
	c, err := volume.OpenCatalog(context.Background(), spec, oo.Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// craft publishes, as the next snapshot, the current manifest changed by
// fn, the way a crafted or broken writer would: unchecked.
func craft(t *testing.T, c *volume.Catalog, fn func(*volume.Manifest)) {
	t.Helper()
	ctx := context.Background()
	m, locs, version, err := volume.HeadForTest(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	cur := volume.Snapshot{Generation: m.Generation, Op: volume.OpPublish, Manifest: locs}
	if m.Snapshot != nil {
		cur = *m.Snapshot
		cur.Manifest = locs
	}
	m.History = append(m.History, cur)
	m.Generation++
	m.Snapshot = nil
	fn(&m)
	if err := volume.PublishRawForTest(ctx, c, m, version); err != nil {
		t.Fatal(err)
	}
}

// headRef is the raw value of meta/head, to show that a dry run changes
// nothing.
func headRef(t *testing.T, store string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(store, "blocks", "refs", "meta", "head"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fakeLocator(i int, size int64) blockstore.Locator {
	return blockstore.Locator{Hash: blockstore.LocatorOf([]byte{byte(i), byte(i >> 8), 'x'}).Hash, Size: size}
}

// TestCraftedManifestRefused: a manifest naming a 1.3 TB segment (20,000
// locators of 64 MiB) used to make every reader allocate the sum before
// reading anything. Now Open fails with ErrBadManifest, a running volume's
// Refresh fails the same way and it keeps serving its tree, and repair
// rolls the store back to the last whole snapshot.
func TestCraftedManifestRefused(t *testing.T) {
	ctx := context.Background()
	data := fstest.RandomBytes(7, 300<<10)
	store := fstest.StoreWithFile(t, "/d", data, smallChunks)
	vol, err := volume.Open(ctx, store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	cat := openCatalog(t, store, volume.Options{})

	for name, seg := range map[string]func() volume.SegmentRef{
		"1.3 TB segment": func() volume.SegmentRef {
			s := volume.SegmentRef{ID: "evil", Size: 20000 * blockstore.MaxBlockSize}
			for i := range 20000 {
				s.Blocks = append(s.Blocks, fakeLocator(i, blockstore.MaxBlockSize))
			}
			return s
		},
		"size that lies": func() volume.SegmentRef {
			return volume.SegmentRef{ID: "evil", Size: 100, Blocks: []blockstore.Locator{fakeLocator(1, blockstore.MaxBlockSize)}}
		},
	} {
		craft(t, cat, func(m *volume.Manifest) { m.Segments = append(m.Segments, seg()) })
		if _, err := volume.Open(ctx, store, volume.Options{}); !errors.Is(err, volume.ErrBadManifest) {
			t.Fatalf("%s: Open = %v, want ErrBadManifest", name, err)
		}
		if _, err := vol.Refresh(ctx); !errors.Is(err, volume.ErrBadManifest) || !strings.Contains(err.Error(), "segment evil") {
			t.Fatalf("%s: Refresh = %v, want ErrBadManifest naming the segment", name, err)
		}
		if got := fstest.ReadBack(t, vol, "/d/f"); !bytes.Equal(got, data) {
			t.Fatalf("%s: running volume lost its tree", name)
		}
		before := headRef(t, store)
		ch, err := cat.Repair(ctx, true)
		if err != nil || ch.Published != nil || len(ch.Damaged) == 0 || len(ch.Undone) == 0 {
			t.Fatalf("%s: repair --dry-run = %+v, %v", name, ch, err)
		}
		if headRef(t, store) != before {
			t.Fatalf("%s: dry run changed meta/head", name)
		}
		if ch, err = cat.Repair(ctx, false); err != nil || ch.Published == nil || ch.Published.Op != volume.OpRepair {
			t.Fatalf("%s: repair = %+v, %v", name, ch, err)
		}
		fresh, err := volume.Open(ctx, store, volume.Options{})
		if err != nil {
			t.Fatalf("%s: Open after repair: %v", name, err)
		}
		if got := fstest.ReadBack(t, fresh, "/d/f"); !bytes.Equal(got, data) {
			t.Fatalf("%s: wrong bytes after repair", name)
		}
		fresh.Close()
	}
}

// poisonedSegment is a segment written by the objects API whose record was
// damaged after sealing: its blocks verify (they are hashed as they are),
// but Ingest refuses it as corrupt.
func poisonedSegment(t *testing.T) []byte {
	t.Helper()
	l, err := objects.Open(t.TempDir(), objects.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.MultiWrite([]objects.Entry{tree.Entry("/evil", &tree.Node{Kind: tree.KindDir, Mode: 0o755})}); err != nil {
		t.Fatal(err)
	}
	if err := l.Seal(); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	data, err := os.ReadFile(segs[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 0xff
	return data
}

// TestPoisonedSegmentSkipped: a published segment that Ingest refuses used
// to fail every Open of the store. Now it is skipped with a logged error
// and counted; other segments' files, published before and after, show.
func TestPoisonedSegmentSkipped(t *testing.T) {
	ctx := context.Background()
	a := fstest.RandomBytes(8, 100<<10)
	store := fstest.StoreWithFile(t, "/a", a, smallChunks)
	cat := openCatalog(t, store, volume.Options{})
	poison := poisonedSegment(t)
	probe, err := objects.Open(t.TempDir(), objects.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := probe.Ingest(poison); !errors.Is(err, objects.ErrCorrupt) {
		t.Fatalf("poison ingests: %v", err)
	}
	probe.Close()
	locs, err := volume.PutBlobForTest(ctx, cat, poison)
	if err != nil {
		t.Fatal(err)
	}
	craft(t, cat, func(m *volume.Manifest) {
		m.Segments = append(m.Segments, volume.SegmentRef{ID: "poison-1", Size: int64(len(poison)), Blocks: locs})
	})
	b := fstest.RandomBytes(9, 100<<10)
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "f"), b, 0o644)
	fstest.ImportInto(t, store, src, "/b", smallChunks) // an import still works

	var logged bytes.Buffer
	vol, err := volume.Open(ctx, store, volume.Options{Logger: log.New(&logged, "", 0)})
	if err != nil {
		t.Fatalf("Open with a poisoned segment: %v", err)
	}
	defer vol.Close()
	if !bytes.Equal(fstest.ReadBack(t, vol, "/a/f"), a) || !bytes.Equal(fstest.ReadBack(t, vol, "/b/f"), b) {
		t.Fatal("files of other segments not served")
	}
	if _, err := vol.Tree.Lookup("/evil"); !errors.Is(err, tree.ErrNotExist) {
		t.Errorf("poisoned segment's node visible: %v", err)
	}
	if st := vol.MetaStats(); st.SkippedSegments != 1 {
		t.Errorf("SkippedSegments = %d, want 1", st.SkippedSegments)
	}
	if !strings.Contains(logged.String(), "SKIPPING metadata segment poison-1") {
		t.Errorf("skip not logged: %q", logged.String())
	}
	if _, err := vol.Refresh(ctx); err != nil || vol.MetaStats().SkippedSegments != 1 {
		t.Errorf("refresh: %v, skipped %d (want the skip counted once)", err, vol.MetaStats().SkippedSegments)
	}
}

// TestVerifyRefusesBadRootAndNoHead: verify used to check 1 file and pass
// when "/" was a file node, and pass with 0 files when meta/head was gone.
func TestVerifyRefusesBadRootAndNoHead(t *testing.T) {
	ctx := context.Background()
	store := fstest.StoreWithFile(t, "/d", fstest.RandomBytes(3, 10<<10), smallChunks)
	if err := os.Remove(filepath.Join(store, "blocks", "refs", "meta", "head")); err != nil {
		t.Fatal(err)
	}
	vol, err := volume.Open(ctx, store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vol.Verify(ctx, "/", false, 2, nil); !errors.Is(err, volume.ErrNoMetadata) {
		t.Errorf("verify without meta/head = %v, want ErrNoMetadata", err)
	}
	vol.Close()

	store = fstest.StoreWithFile(t, "/d", fstest.RandomBytes(3, 10<<10), smallChunks)
	vol, err = volume.Open(ctx, store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := vol.Tree.Lookup("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	if err := vol.Meta.MultiWrite([]objects.Entry{tree.Entry("/", f)}); err != nil {
		t.Fatal(err)
	}
	if err := vol.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	vol.Close()
	vol, err = volume.Open(ctx, store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	if _, err := vol.Verify(ctx, "/", false, 2, nil); !errors.Is(err, volume.ErrBadRoot) {
		t.Errorf("verify of a file root = %v, want ErrBadRoot", err)
	}
}

// TestStaleMetaDirsRemoved: a killed process's private log directory is
// removed by the next Open in the same parent; a live one's is not.
func TestStaleMetaDirsRemoved(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	store := fstest.StoreWithFile(t, "/d", []byte("x"), smallChunks)
	oo := volume.Options{MetaDir: parent}
	live, err := volume.Open(ctx, store, oo)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	// A dead process's directory: a log that was opened and never closed
	// by its owner (its flock went with the process).
	dead := filepath.Join(parent, "blockfs-meta-dead")
	if err := os.MkdirAll(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, filepath.Join(dead, "LOCK"), nil, 0o644)
	long := time.Now().Add(-2 * time.Minute) // past the setup window of a LOCK
	if err := os.Chtimes(filepath.Join(dead, "LOCK"), long, long); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, filepath.Join(dead, "00000001.seg"), make([]byte, 4096), 0o644)
	other := filepath.Join(parent, "not-ours")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}

	v2, err := volume.Open(ctx, store, oo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead process's metadata dir still there: %v", err)
	}
	for _, d := range []string{volume.MetaDirForTest(live), volume.MetaDirForTest(v2), other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
	if filepath.Dir(volume.MetaDirForTest(v2)) != parent {
		t.Errorf("meta dir %s not under --meta-dir %s", volume.MetaDirForTest(v2), parent)
	}
	v2.Close()
	if _, err := fstest.ReadBack(t, live, "/d/f"), error(nil); err != nil {
		t.Fatal(err)
	}
}

// TestCraftedManifestLeavesMountServing: a real mount refreshing while a
// crafted manifest lands counts refresh errors and keeps serving the files
// it had, byte for byte; after repair its refreshes succeed again.
func TestCraftedManifestLeavesMountServing(t *testing.T) {
	ctx := context.Background()
	data := fstest.RandomBytes(17, 200<<10)
	store := fstest.StoreWithFile(t, "/d", data, smallChunks)
	tm := fstest.MountWith(t, store, volume.Options{Logger: log.New(io.Discard, "", 0)},
		mount.Options{Refresh: 10 * time.Millisecond, CacheTimeout: time.Millisecond, Logger: fstest.DiscardLogger()})
	cat := openCatalog(t, store, volume.Options{})
	craft(t, cat, func(m *volume.Manifest) {
		s := volume.SegmentRef{ID: "evil", Size: 20000 * blockstore.MaxBlockSize}
		for i := range 20000 {
			s.Blocks = append(s.Blocks, fakeLocator(i, blockstore.MaxBlockSize))
		}
		m.Segments = append(m.Segments, s)
	})
	errs := tm.Vol.MetaStats().RefreshErrors
	testsvc.WaitFor(t, "two failed refreshes", func() bool { return tm.Vol.MetaStats().RefreshErrors >= errs+2 })
	if got, err := os.ReadFile(tm.Path("d/f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("mount after a crafted manifest: %d bytes, %v", len(got), err)
	}
	if _, err := cat.Repair(ctx, false); err != nil {
		t.Fatal(err)
	}
	refreshes := tm.Vol.MetaStats().Refreshes
	testsvc.WaitFor(t, "a refresh after repair", func() bool { return tm.Vol.MetaStats().Refreshes >= refreshes+2 })
	errs = tm.Vol.MetaStats().RefreshErrors
	refreshes = tm.Vol.MetaStats().Refreshes
	testsvc.WaitFor(t, "more refreshes", func() bool { return tm.Vol.MetaStats().Refreshes >= refreshes+2 })
	if e := tm.Vol.MetaStats().RefreshErrors; e != errs {
		t.Errorf("refreshes still fail after repair: %d new errors", e-errs)
	}
	if got, err := os.ReadFile(tm.Path("d/f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("mount after repair: %d bytes, %v", len(got), err)
	}
}
