package volume_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/parts"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

// tinyParts makes publishes write parts of at most 6 entries, so that a
// small tree is many parts.
var tinyParts = volume.Options{Options: storeurl.Options{Create: true}, PartsMaxEntries: 6}

// publishWith writes entries from a volume opened with oo and publishes.
func publishWith(t *testing.T, spec string, oo volume.Options, entries ...objects.Entry) {
	t.Helper()
	oo.Create = true
	v, err := volume.Open(context.Background(), spec, oo)
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

// treeEntries is a tree of nd directories of three subdirectories of nf
// files each.
func treeEntries(nd, nf int) []objects.Entry {
	dir := &tree.Node{Kind: tree.KindDir, Mode: 0o755}
	es := []objects.Entry{tree.Entry("/", dir)}
	for d := range nd {
		es = append(es, tree.Entry(fmt.Sprintf("/d%d", d), dir))
		for s := range 3 {
			es = append(es, tree.Entry(fmt.Sprintf("/d%d/s%d", d, s), dir))
			for f := range nf {
				n := &tree.Node{Kind: tree.KindFile, Mode: 0o644, MtimeNs: int64(f)}
				n.SetBlocks([]blockstore.Locator{blockstore.LocatorOf([]byte(fmt.Sprint(d, s, f)))})
				es = append(es, tree.Entry(fmt.Sprintf("/d%d/s%d/f%d", d, s, f), n))
			}
		}
	}
	return es
}

// dump is every node of v's tree, encoded, with its version.
func dump(t *testing.T, v *volume.Volume) []string {
	t.Helper()
	var out []string
	err := v.Tree.Walk("/", func(p string, n *tree.Node) error {
		out = append(out, fmt.Sprintf("%s %x %d", p, n.AppendBinary(nil), n.Version))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func openLazy(t *testing.T, spec string, oo volume.Options) *volume.Volume {
	t.Helper()
	oo.Lazy = true
	v, err := volume.Open(context.Background(), spec, oo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// TestLazyTreeIsTheIngestedTree: a lazy volume serves, from parts, exactly
// the nodes (and versions) a volume that ingested every segment serves,
// and a real mount of it shows the imported tree byte for byte, with the
// same inode numbers as a mount that ingests.
func TestLazyTreeIsTheIngestedTree(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, tinyParts, treeEntries(5, 7)...)
	publishWith(t, spec, tinyParts, tree.DeleteEntry("/d1/s1/f3"), tree.Entry("/d9", &tree.Node{Kind: tree.KindDir, Mode: 0o700}))
	full, err := volume.Open(context.Background(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	lazy := openLazy(t, spec, volume.Options{})
	if st := lazy.MetaStats(); !st.PartsServed || st.Segments != 0 {
		t.Fatalf("lazy volume: %+v, want parts served and nothing ingested", st)
	}
	if got, want := dump(t, lazy), dump(t, full); !slices.Equal(got, want) {
		t.Fatalf("lazy tree of %d nodes differs from the ingested one of %d", len(got), len(want))
	}
	var walked parts.Totals
	full.Tree.Walk("/", func(p string, n *tree.Node) error {
		switch {
		case p == "/":
		case n.Kind == tree.KindDir:
			walked.Dirs++
		case n.Kind == tree.KindFile:
			walked.Files++
			walked.Bytes += n.Size
		default:
			walked.Symlinks++
		}
		return nil
	})
	if got, ok := lazy.Totals(); !ok || got != walked {
		t.Errorf("totals from parts %+v (%v), a walk counts %+v", got, ok, walked)
	}
	if _, ok := full.Totals(); ok {
		t.Error("an ingesting volume reports totals")
	}

	src := fstest.SampleTree(t)
	for i := range 4 {
		fstest.WriteFile(t, filepath.Join(src, fmt.Sprintf("many/d%d/f", i)), []byte(fmt.Sprint(i)), 0o644)
	}
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportWith(t, store, volume.Options{PartsMaxEntries: 4}, src, "/", importer.Options{})
	lm := fstest.MountWith(t, store, volume.Options{Lazy: true}, mount.Options{})
	if !lm.Vol.MetaStats().PartsServed {
		t.Fatal("the mount does not serve from parts")
	}
	fstest.CmpTrees(t, src, lm.Dir)
	fm := fstest.MountWith(t, store, volume.Options{}, mount.Options{})
	inodes := func(dir string) string {
		return fstest.Sh(t, "sh", "-c", "cd "+dir+" && find . -printf '%i %p %m %s\\n' | sort -k2")
	}
	if a, b := inodes(lm.Dir), inodes(fm.Dir); a != b {
		t.Fatalf("inodes differ between a lazy and an ingesting mount:\n%s\n%s", a, b)
	}
}

// TestLazyOpenFetchesOnlyTheRootPart: opening a lazy volume and looking up
// the root reads the manifest and the root part, nothing else (counted at
// the store); a deeper lookup fetches only the parts on its path.
func TestLazyOpenFetchesOnlyTheRootPart(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, tinyParts, treeEntries(8, 10)...)
	var counting *storetest.Counting
	oo := volume.Options{Options: storeurl.Options{WrapBackend: func(s blockstore.Store) blockstore.Store {
		counting = storetest.NewCounting(s)
		return counting
	}}}
	v := openLazy(t, spec, oo)
	if _, err := v.Tree.Lookup("/"); err != nil {
		t.Fatal(err)
	}
	st := v.MetaStats()
	if st.PartsFetched != 1 || counting.Gets() != 2 || st.Segments != 0 {
		t.Fatalf("open: %d parts fetched, %d GETs (want 1 part, 2 GETs: the manifest and the root part), %d segments ingested",
			st.PartsFetched, counting.Gets(), st.Segments)
	}
	if _, err := v.Tree.Lookup("/d5/s2/f9"); err != nil {
		t.Fatal(err)
	}
	if got := v.MetaStats().PartsFetched; got < 2 || got > 4 {
		t.Fatalf("a lookup three levels down fetched %d parts in all", got)
	}
}

// headManifest reads the store's current manifest, as a test looks at it.
func headManifest(t *testing.T, spec string) (volume.Manifest, blockstore.Store, func()) {
	t.Helper()
	ctx := context.Background()
	cat, err := volume.OpenCatalog(ctx, spec, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := cat.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for _, l := range snaps[0].Manifest {
		b := make([]byte, l.Size)
		if err := blockstore.ReadVerified(ctx, cat.Blocks(), l, b); err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	var m volume.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m, cat.Blocks(), func() { cat.Close() }
}

// partRoots maps every part of the store's current snapshot to its root.
func partRoots(t *testing.T, spec string) map[string]parts.Ref {
	t.Helper()
	m, blocks, done := headManifest(t, spec)
	defer done()
	if m.Parts == nil {
		t.Fatal("the manifest names no parts")
	}
	c := parts.NewCache(blocks, parts.CacheOptions{})
	defer c.Close()
	out := map[string]parts.Ref{}
	err := c.Reader(m.Parts.Ref).Walk(context.Background(), func(root string, r parts.Ref) error { out[root] = r; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCorruptPartFailsOnlyItsSubtree: a part whose block is damaged in a
// directory store makes the paths below its root fail with an error
// wrapping ErrCorrupt (EIO in a mount), with one clear log line, while the
// rest of the tree serves.
func TestCorruptPartFailsOnlyItsSubtree(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, tinyParts, treeEntries(4, 10)...)
	bad, ok := partRoots(t, spec)["/d2/s1"]
	if !ok {
		t.Fatal("no part of its own for /d2/s1")
	}
	testsvc.CorruptInPlace(t, blockFile(spec, bad.Blocks[0].Hash))
	var logged syncBuffer
	oo := volume.Options{Logger: log.New(&logged, "", 0)}
	v := openLazy(t, spec, oo)
	if _, err := v.Tree.Lookup("/d2/s1/f3"); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("lookup in the damaged part: %v, want ErrCorrupt", err)
	}
	for _, p := range []string{"/d2/s1", "/d2/s0/f3", "/d1/s1/f3", "/d3/s2"} {
		if _, err := v.Tree.Lookup(p); err != nil {
			t.Errorf("%s, outside the damaged part: %v", p, err)
		}
	}
	oo.Lazy = true
	m := fstest.MountWith(t, spec, oo, mount.Options{})
	if _, err := os.Stat(m.Path("/d2/s1/f3")); !errors.Is(err, syscall.EIO) {
		t.Errorf("stat in the damaged part through the mount: %v, want EIO", err)
	}
	if _, err := os.Stat(m.Path("/d2/s0/f3")); err != nil {
		t.Errorf("stat outside it through the mount: %v", err)
	}
	if n := strings.Count(logged.String(), "(subtree /d2/s1) of store "+spec); n != 2 {
		t.Errorf("%d log lines naming the part, want one per volume (2):\n%s", n, logged.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLazyRefreshReportsChangedPaths: a lazy volume's refresh reports
// exactly the paths that changed (found by diffing the part trees), each
// visible by then; refreshing to a snapshot without parts and back works.
func TestLazyRefreshReportsChangedPaths(t *testing.T) {
	ctx := context.Background()
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, tinyParts, treeEntries(4, 10)...)
	v := openLazy(t, spec, volume.Options{})
	publishWith(t, spec, tinyParts, tree.Entry("/d1/s1/f3", &tree.Node{Kind: tree.KindDir, Mode: 0o700}), tree.DeleteEntry("/d3/s0/f9"),
		tree.Entry("/d0/new", &tree.Node{Kind: tree.KindSymlink, Target: "x", Size: 1}))
	var got []string
	changed, err := v.RefreshNotify(ctx, func(p string) {
		n, err := v.Tree.Lookup(p)
		if p == "/d1/s1/f3" && (err != nil || n.Kind != tree.KindDir) {
			t.Errorf("%s reported before it was visible: %v %v", p, n, err)
		}
		got = append(got, p)
	})
	if err != nil || !changed {
		t.Fatalf("refresh: %v %v", changed, err)
	}
	slices.Sort(got)
	if want := []string{"/d0/new", "/d1/s1/f3", "/d3/s0/f9"}; !slices.Equal(got, want) {
		t.Fatalf("changed %q, want %q", got, want)
	}

	// A publish of a release before parts (or a rollback to one): the
	// volume ingests; then parts again.
	publishWith(t, spec, volume.Options{PartsMaxEntries: -1}, tree.Entry("/old", &tree.Node{Kind: tree.KindDir}))
	if _, err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if st := v.MetaStats(); st.PartsServed || st.Segments == 0 {
		t.Fatalf("after a manifest without parts: %+v", st)
	}
	if _, err := v.Tree.Lookup("/old"); err != nil {
		t.Fatal(err)
	}
	publishWith(t, spec, tinyParts, tree.Entry("/new", &tree.Node{Kind: tree.KindDir}))
	got = nil
	if _, err := v.RefreshNotify(ctx, func(p string) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	if !v.MetaStats().PartsServed || !slices.Contains(got, "/new") {
		t.Fatalf("back to parts: %+v, reported %d paths", v.MetaStats(), len(got))
	}
	for _, p := range []string{"/new", "/old", "/d0/new"} {
		if _, err := v.Tree.Lookup(p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLazyOpenOfOldStores: manifests without parts (written before them,
// here by a volume told not to write them, and the release-before-packing
// store in fs/mount/testdata) are served by ingesting, as before.
func TestLazyOpenOfOldStores(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, volume.Options{PartsMaxEntries: -1}, treeEntries(2, 3)...)
	m, _, done := headManifest(t, spec)
	done()
	if m.Parts != nil {
		t.Fatal("parts written although disabled")
	}
	v := openLazy(t, spec, volume.Options{})
	if st := v.MetaStats(); st.PartsServed || st.Segments == 0 {
		t.Fatalf("%+v", st)
	}
	if n := len(dump(t, v)); n != 1+2*4+2*3*3 {
		t.Fatalf("%d nodes", n)
	}
	old := filepath.Join(t.TempDir(), "v2store")
	if out, err := exec.Command("cp", "-a", "../mount/testdata/v2store", old).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	ov := openLazy(t, old, volume.Options{})
	if _, err := ov.Tree.Lookup("/v2/lib/sub/c.py"); err != nil {
		t.Fatal(err)
	}
}

// TestSecondPublishRebuildsOnlyDirtyParts: a volume's second publish
// encodes only the parts above the paths it changed, and the tree they
// serve is still exactly the ingested one.
func TestSecondPublishRebuildsOnlyDirtyParts(t *testing.T) {
	ctx := context.Background()
	spec := filepath.Join(t.TempDir(), "store")
	oo := tinyParts
	v, err := volume.Open(ctx, spec, oo)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.Meta.MultiWrite(treeEntries(8, 10)); err != nil {
		t.Fatal(err)
	}
	if err := v.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	first := v.MetaStats().PartsBuilt
	if err := v.Meta.MultiWrite([]objects.Entry{tree.DeleteEntry("/d6/s2/f4")}); err != nil {
		t.Fatal(err)
	}
	if err := v.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	second := v.MetaStats().PartsBuilt - first
	if first < 20 || second > 4 {
		t.Fatalf("first publish built %d parts, the second %d (want only those above /d6/s2/f4)", first, second)
	}
	full, err := volume.Open(ctx, spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if got, want := dump(t, openLazy(t, spec, volume.Options{})), dump(t, full); !slices.Equal(got, want) {
		t.Fatal("the parts of the second publish serve another tree than its segments")
	}
}

// TestLazyServesBadNodesAsTheLogDoes: nodes that do not decode (a bad
// root, a bad entry) fail from parts exactly where they fail from the log.
func TestLazyServesBadNodesAsTheLogDoes(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "store")
	bad := []byte{0xff, 0xff}
	es := append(treeEntries(1, 2), objects.Entry{Keys: [][]byte{[]byte("/")}, Value: bad})
	es = append(es, objects.Entry{Keys: [][]byte{[]byte("/d0/bad"), []byte("/d0\x00bad")}, Value: bad})
	publishWith(t, spec, tinyParts, es...)
	full, err := volume.Open(context.Background(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	lazy := openLazy(t, spec, volume.Options{})
	for _, p := range []string{"/", "/d0/bad", "/d0/s1/f1"} {
		_, ferr := full.Tree.Lookup(p)
		_, lerr := lazy.Tree.Lookup(p)
		if (ferr == nil) != (lerr == nil) || (ferr != nil && ferr.Error() != lerr.Error()) {
			t.Errorf("lookup %s: log %v, parts %v", p, ferr, lerr)
		}
	}
	errs := func(v *volume.Volume) (out []string) {
		v.Tree.ListEach("/d0", func(name string, _ *tree.Node, err error) bool {
			out = append(out, fmt.Sprint(name, err))
			return true
		})
		return out
	}
	if a, b := errs(full), errs(lazy); !slices.Equal(a, b) {
		t.Errorf("listing: log %q, parts %q", a, b)
	}
}

// TestLazyFollowsRollback: a rollback publishes the restored snapshot's
// parts with its segments; a lazy volume's refresh serves exactly that
// tree again and reports the paths the rollback changed.
func TestLazyFollowsRollback(t *testing.T) {
	ctx := context.Background()
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, tinyParts, treeEntries(3, 5)...)
	v := openLazy(t, spec, volume.Options{})
	want := dump(t, v)
	publishWith(t, spec, tinyParts, tree.DeleteEntry("/d1/s1/f1"), tree.Entry("/d2/x", &tree.Node{Kind: tree.KindDir}))
	if _, err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	cat, err := volume.OpenCatalog(ctx, spec, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if _, err := cat.Rollback(ctx, "1", false); err != nil {
		t.Fatal(err)
	}
	if m, _, done := headManifest(t, spec); m.Parts == nil {
		done()
		t.Fatal("the rollback's manifest has no parts")
	} else {
		done()
	}
	var got []string
	if _, err := v.RefreshNotify(ctx, func(p string) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if w := []string{"/d1/s1/f1", "/d2/x"}; !slices.Equal(got, w) {
		t.Errorf("rollback reported %q, want %q", got, w)
	}
	if !v.MetaStats().PartsServed || !slices.Equal(dump(t, v), want) {
		t.Fatal("after the rollback the lazy volume does not serve snapshot 1's tree from parts")
	}
}

// TestLazyOpenOnMinIO: on the real MinIO, a lazy open and a lookup cost
// the head ref, the store marker, the manifest and the parts on the
// lookup's path, whatever the size of the store and the number of its
// segments, while an ingesting open reads every segment.
func TestLazyOpenOnMinIO(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	oo := fstest.S3Options(m, m.Endpoint())
	small, big := "s3://"+bucket+"/small", "s3://"+bucket+"/big"
	w := oo
	w.PartsMaxEntries = 50
	publishWith(t, small, w, treeEntries(1, 2)...)
	es := treeEntries(40, 20)
	for i := range 5 {
		publishWith(t, big, w, es[i*len(es)/5:(i+1)*len(es)/5]...)
	}
	gets := func(spec string, lazy bool) (gets, parts int64) {
		t.Helper()
		before := m.Requests(t, "getobject")
		o := oo
		o.Lazy = lazy
		v, err := volume.Open(context.Background(), spec, o)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if _, err := v.Tree.Lookup("/d0/s0/f1"); err != nil {
			t.Fatal(err)
		}
		parts = v.MetaStats().PartsFetched
		return m.WaitRequests(t, "getobject", before+3+parts) - before, parts
	}
	// The small store is one part; in the big one (parts of at most 50
	// entries) every /dN and its biggest subdirectory are split off.
	if n, p := gets(small, true); p != 1 || n != 3+1 {
		t.Errorf("lazy open of the small store: %d GETs, %d parts (want 4: ref, marker, manifest, the one part)", n, p)
	}
	if n, p := gets(big, true); p != 3 || n != 3+3 {
		t.Errorf("lazy open of the big store: %d GETs, %d parts (want 6: ref, marker, manifest, the parts of /, /d0, /d0/s0)", n, p)
	}
	if n, _ := gets(big, false); n < 3+5 {
		t.Errorf("an ingesting open of the big store: %d GETs, want at least its 5 segments and the ref, marker and manifest", n)
	}
}

// TestVerifyReportsABadPart: verify names the part whose block is gone.
func TestVerifyReportsABadPart(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, tinyParts, treeEntries(3, 10)...)
	bad := partRoots(t, spec)["/d1"]
	h := bad.Blocks[0].Hash.String()
	if err := os.Remove(filepath.Join(spec, "blocks", h[:2], h)); err != nil {
		t.Fatal(err)
	}
	v, err := volume.Open(context.Background(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rep, err := v.Verify(context.Background(), "/", false, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Missing) == 0 || !slices.ContainsFunc(rep.Missing, func(p volume.Problem) bool {
		return p.Block == bad.Blocks[0] && slices.Contains(p.Paths, "metadata part of /d1")
	}) {
		t.Fatalf("verify with the part of /d1 gone: %+v", rep)
	}
}

// TestRepairPartsRewritesABadPart: a part corrupted in place (same size,
// so a plain put would leave it) and a part gone are found by a dry run,
// which changes nothing, then rebuilt from the segments: the same parts,
// their blocks written again, no new snapshot; verify finds no bad part
// and a lazy listing of the subtrees passes afterwards.
func TestRepairPartsRewritesABadPart(t *testing.T) {
	ctx := context.Background()
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, tinyParts, treeEntries(3, 10)...)
	roots := partRoots(t, spec)
	corrupt := blockFile(spec, roots["/d1"].Blocks[0].Hash)
	_, data := testsvc.CorruptInPlace(t, corrupt)
	if err := os.Remove(blockFile(spec, roots["/d2/s1"].Blocks[0].Hash)); err != nil {
		t.Fatal(err)
	}
	generation := func() uint64 {
		m, _, done := headManifest(t, spec)
		defer done()
		return m.Snapshot.Generation
	}
	before := generation()

	v, err := volume.Open(ctx, spec, tinyParts)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	dry, err := v.RepairParts(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Damaged) != 1 || dry.Rewritten != 0 || dry.Published != nil {
		t.Fatalf("dry run: %+v, want one damaged part and nothing written", dry)
	}
	if got, _ := os.ReadFile(corrupt); !bytes.Equal(got, data) {
		t.Fatal("the dry run changed the corrupt part")
	}
	rep, err := v.RepairParts(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rewritten != 2 || rep.Published != nil {
		t.Fatalf("repair: %+v, want the 2 bad blocks rewritten and no new snapshot (the same parts)", rep)
	}
	if g := generation(); g != before {
		t.Errorf("generation %d after the repair, want %d (repaired in place)", g, before)
	}
	again, err := v.RepairParts(ctx, false)
	if err != nil || len(again.Damaged) != 0 || again.Rewritten != 0 {
		t.Fatalf("repair after repair: %+v, %v; want nothing to do", again, err)
	}
	// The files' own blocks were never stored (metadata only): verify
	// is asked about the parts alone.
	rep2, err := v.Verify(ctx, "/", true, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(rep2.Missing, rep2.Corrupt...) {
		if strings.HasPrefix(p.Paths[0], "metadata part") {
			t.Errorf("verify after the repair: %s: %s", p.Paths[0], p.Error)
		}
	}
	lazy, err := volume.Open(ctx, spec, volume.Options{Lazy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lazy.Close()
	for _, d := range []string{"/d1/s0", "/d2/s1"} {
		names := 0
		if err := lazy.Tree.List(d, func(string, *tree.Node) bool { names++; return true }); err != nil || names != 10 {
			t.Errorf("lazy list %s after the repair: %d names, %v", d, names, err)
		}
	}
}

// TestRepairPartsPublishesWhenTheRebuildDiffers: parts rebuilt with other
// part sizes than the damaged ones' are other blocks: the repair publishes
// them as a snapshot of the same segments (op repair), whose parts are
// whole.
func TestRepairPartsPublishesWhenTheRebuildDiffers(t *testing.T) {
	ctx := context.Background()
	spec := filepath.Join(t.TempDir(), "store")
	publishWith(t, spec, tinyParts, treeEntries(3, 10)...)
	if err := os.Remove(blockFile(spec, partRoots(t, spec)["/d1"].Blocks[0].Hash)); err != nil {
		t.Fatal(err)
	}
	v, err := volume.Open(ctx, spec, volume.Options{}) // default part size
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rep, err := v.RepairParts(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Published == nil || rep.Published.Op != volume.OpRepair {
		t.Fatalf("repair: %+v, want a repair snapshot with the new parts", rep)
	}
	m, _, done := headManifest(t, spec)
	defer done()
	if m.Snapshot.Generation != rep.Published.Generation || m.Parts == nil {
		t.Fatalf("head is snapshot %d with parts %v, want %d with parts", m.Snapshot.Generation, m.Parts, rep.Published.Generation)
	}
	fresh, err := volume.Open(ctx, spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if again, err := fresh.RepairParts(ctx, true); err != nil || len(again.Damaged) != 0 {
		t.Fatalf("the published parts: %+v, %v; want whole", again, err)
	}
}

// blockFile is where a directory store keeps block h.
func blockFile(store string, h blockstore.Hash) string {
	s := h.String()
	return filepath.Join(store, "blocks", s[:2], s)
}
