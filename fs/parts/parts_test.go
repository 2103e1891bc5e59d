package parts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
	"blockfs/fs/tree"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

// testLog is a metadata log holding a generated tree: dirs d0..d(nd-1),
// each with sub-directories and files, some symlinks.
func testLog(t testing.TB, nd, files int) *objects.Log {
	t.Helper()
	lg, err := objects.Open(t.TempDir(), objects.Options{Sync: objects.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	var batch []objects.Entry
	add := func(p string, n *tree.Node) { batch = append(batch, tree.Entry(p, n)) }
	add("/", &tree.Node{Kind: tree.KindDir, Mode: 0o755, Owned: true, UID: 7})
	for d := range nd {
		dir := fmt.Sprintf("/d%d", d)
		add(dir, &tree.Node{Kind: tree.KindDir, Mode: 0o755})
		for s := range 3 {
			sub := fmt.Sprintf("%s/s%d", dir, s)
			add(sub, &tree.Node{Kind: tree.KindDir, Mode: 0o700})
			for f := range files {
				n := &tree.Node{Kind: tree.KindFile, Mode: 0o644, MtimeNs: int64(f)}
				n.SetBlocks([]blockstore.Locator{blockstore.LocatorOf([]byte(fmt.Sprint(d, s, f)))})
				add(fmt.Sprintf("%s/f%03d", sub, f), n)
			}
		}
		add(dir+"/link", &tree.Node{Kind: tree.KindSymlink, Target: "s0", Size: 2})
		add(dir+"-x", &tree.Node{Kind: tree.KindDir, Mode: 0o755}) // sorts between d1 and d1/...: depth-first order
		add(dir+"-x/e", &tree.Node{Kind: tree.KindDir, Mode: 0o755})
	}
	if err := lg.MultiWrite(batch); err != nil {
		t.Fatal(err)
	}
	return lg
}

type fixture struct {
	store *storetest.Counting
	ref   Ref
	st    BuildStats
	cache *Cache
	log   bytes.Buffer
}

func build(t testing.TB, lg *objects.Log, max int, store *storetest.Counting) *fixture {
	t.Helper()
	f := &fixture{store: store}
	put := func(ctx context.Context, data []byte) ([]blockstore.Locator, error) {
		var locs []blockstore.Locator
		for len(data) > 0 {
			n := min(len(data), 4<<20)
			l := blockstore.LocatorOf(data[:n])
			if err := store.Put(ctx, l.Hash, data[:n]); err != nil {
				return nil, err
			}
			locs = append(locs, l)
			data = data[n:]
		}
		return locs, nil
	}
	var err error
	f.ref, f.st, err = Build(context.Background(), tree.LogSource{Log: lg}, BuildOptions{MaxEntries: max}, put)
	if err != nil {
		t.Fatal(err)
	}
	f.cache = NewCache(store, CacheOptions{Logger: log.New(&f.log, "", 0), Store: "test"})
	t.Cleanup(f.cache.Close)
	return f
}

// walk lists every node of t as text.
func walk(t testing.TB, tr *tree.Tree) []string {
	t.Helper()
	var out []string
	err := tr.Walk("/", func(p string, n *tree.Node) error {
		out = append(out, fmt.Sprintf("%s %x v%d", p, n.AppendBinary(nil), n.Version))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPartsServeTheSameTree(t *testing.T) {
	lg := testLog(t, 6, 20)
	want := walk(t, tree.NewTree(lg))
	for _, max := range []int{1, 7, 50, 100000} {
		f := build(t, lg, max, storetest.NewCounting(storetest.NewMem()))
		got := walk(t, tree.NewTreeFrom(f.cache.Reader(f.ref)))
		if !slices.Equal(got, want) {
			t.Fatalf("max %d: parts serve %d nodes unlike the log's %d", max, len(got), len(want))
		}
		if max == 100000 && f.st.Parts != 1 {
			t.Errorf("max %d: %d parts, want 1", max, f.st.Parts)
		}
		if max == 7 && f.st.Parts < 10 {
			t.Errorf("max %d: only %d parts", max, f.st.Parts)
		}
		if f.ref.Totals.Files != 6*3*20 || f.ref.Totals.Symlinks != 6 || f.ref.Totals.Dirs != 6*(1+3+2) {
			t.Errorf("totals %+v", f.ref.Totals)
		}
		for _, p := range []string{"/d1/s2/f019", "/d1-x/e", "/nope", "/d1/link/x", "/d1/s2/f019/x"} {
			a, aerr := tree.NewTree(lg).Lookup(p)
			b, berr := tree.NewTreeFrom(f.cache.Reader(f.ref)).Lookup(p)
			if (aerr == nil) != (berr == nil) || (aerr == nil && !bytes.Equal(a.AppendBinary(nil), b.AppendBinary(nil))) {
				t.Errorf("max %d: lookup %s: log %v %v, parts %v %v", max, p, a, aerr, b, berr)
			}
			if berr != nil && !errors.Is(berr, tree.ErrNotExist) {
				t.Errorf("lookup %s: %v", p, berr)
			}
		}
	}
}

func TestLookupFetchesOnlyThePartsOnItsPath(t *testing.T) {
	lg := testLog(t, 6, 20)
	f := build(t, lg, 25, storetest.NewCounting(storetest.NewMem()))
	tr := tree.NewTreeFrom(f.cache.Reader(f.ref))
	if _, err := tr.Lookup("/"); err != nil {
		t.Fatal(err)
	}
	if got := f.store.Gets(); got != int64(len(f.ref.Blocks)) {
		t.Fatalf("the root costs %d GETs, want %d (its blocks)", got, len(f.ref.Blocks))
	}
	if _, err := tr.Lookup("/d3/s1/f004"); err != nil {
		t.Fatal(err)
	}
	if got := f.cache.Fetches(); got < 2 || got > 4 {
		t.Fatalf("a lookup three deep fetched %d parts", got)
	}
	before := f.cache.Fetches()
	if _, err := tr.Lookup("/d3/s1/f005"); err != nil {
		t.Fatal(err)
	}
	if f.cache.Fetches() != before {
		t.Fatal("a second lookup in the same part fetched again")
	}
}

func TestCorruptPartFailsOnlyItsSubtree(t *testing.T) {
	lg := testLog(t, 4, 20)
	mem := storetest.NewMem()
	f := build(t, lg, 25, storetest.NewCounting(mem))
	// Find the part of /d2/s1 and replace its block's bytes.
	var bad Ref
	err := f.cache.Reader(f.ref).Walk(context.Background(), func(root string, r Ref) error {
		if root == "/d2/s1" {
			bad = r
		}
		return nil
	})
	if err != nil || bad.Size == 0 {
		t.Fatalf("no part for /d2/s1 (%v)", err)
	}
	c := NewCache(corrupting{Store: mem, bad: bad.Blocks[0].Hash}, CacheOptions{Logger: log.New(&f.log, "", 0), Store: "test"})
	defer c.Close()
	tr := tree.NewTreeFrom(c.Reader(f.ref))
	if _, err := tr.Lookup("/d2/s1/f001"); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("lookup in the corrupt part: %v, want ErrCorrupt", err)
	}
	if err := tr.ListEach("/d2/s1", func(string, *tree.Node, error) bool { return true }); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("listing the corrupt part: %v", err)
	}
	for _, p := range []string{"/d2/s1", "/d2/s0/f001", "/d1/s1/f001", "/d3"} {
		if _, err := tr.Lookup(p); err != nil {
			t.Errorf("lookup %s outside the corrupt part: %v", p, err)
		}
	}
	if n := strings.Count(f.log.String(), "subtree /d2/s1"); n != 1 {
		t.Errorf("%d log lines for the part, want 1:\n%s", n, f.log.String())
	}
}

func TestDiffReportsExactlyTheChangedPaths(t *testing.T) {
	lg := testLog(t, 5, 20)
	store := storetest.NewCounting(storetest.NewMem())
	a := build(t, lg, 25, store)
	n := &tree.Node{Kind: tree.KindFile, Mode: 0o600}
	n.SetBlocks([]blockstore.Locator{blockstore.LocatorOf([]byte("new"))})
	err := lg.MultiWrite([]objects.Entry{
		tree.Entry("/d1/s2/f003", n),                           // changed
		tree.Entry("/d4/new", n),                               // added
		tree.DeleteEntry("/d0/s0/f000"),                        // removed
		tree.DeleteEntry("/d3-x/e"),                            // a removed directory
		tree.Entry("/d2/s1/g", &tree.Node{Kind: tree.KindDir}), // added dir
	})
	if err != nil {
		t.Fatal(err)
	}
	b := build(t, lg, 25, store)
	var got []string
	before := a.cache.Fetches()
	if err := Diff(context.Background(), a.cache.Reader(a.ref), a.cache.Reader(b.ref), func(p string) { got = append(got, p) }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{"/d0/s0/f000", "/d1/s2/f003", "/d2/s1/g", "/d3-x/e", "/d4/new"}
	if !slices.Equal(got, want) {
		t.Fatalf("diff reports %q, want %q", got, want)
	}
	if fetched := a.cache.Fetches() - before; fetched >= int64(a.st.Parts+b.st.Parts) {
		t.Errorf("diff fetched %d parts: it read unchanged ones", fetched)
	}
}

// corrupting serves block bad with one byte flipped, as a damaged disk
// or a hostile store would.
type corrupting struct {
	blockstore.Store
	bad blockstore.Hash
}

func (c corrupting) Get(ctx context.Context, l blockstore.Locator, dst []byte) (int, error) {
	n, err := c.Store.Get(ctx, l, dst)
	if err == nil && l.Hash == c.bad && n > 10 {
		dst[10] ^= 1
	}
	return n, err
}

// TestIncrementalBuild: a build that reuses the parts of clean subtrees
// from the previous build serves the same tree as a full one, reading and
// storing only the dirty subtrees' parts.
func TestIncrementalBuild(t *testing.T) {
	lg := testLog(t, 6, 20)
	store := storetest.NewCounting(storetest.NewMem())
	a := build(t, lg, 25, store)
	n := &tree.Node{Kind: tree.KindFile, Mode: 0o600}
	n.SetBlocks([]blockstore.Locator{blockstore.LocatorOf([]byte("new"))})
	if err := lg.MultiWrite([]objects.Entry{tree.Entry("/d4/s1/new", n), tree.DeleteEntry("/d2/s0/f001")}); err != nil {
		t.Fatal(err)
	}
	dirty := map[string]bool{"/": true, "/d4": true, "/d4/s1": true, "/d2": true, "/d2/s0": true}
	var stored int
	put := func(ctx context.Context, data []byte) ([]blockstore.Locator, error) {
		stored++
		l := blockstore.LocatorOf(data)
		return []blockstore.Locator{l}, store.Put(ctx, l.Hash, data)
	}
	ref, st, err := Build(context.Background(), tree.LogSource{Log: lg}, BuildOptions{MaxEntries: 25, Reuse: a.st.Stored, Dirty: func(p string) bool { return dirty[p] }}, put)
	if err != nil {
		t.Fatal(err)
	}
	if st.Reused == 0 || stored > 5 {
		t.Errorf("reused %d parts, stored %d", st.Reused, stored)
	}
	if len(st.Stored) != len(a.st.Stored) {
		t.Errorf("%d parts known after the build, %d before", len(st.Stored), len(a.st.Stored))
	}
	full := build(t, lg, 25, store)
	if got, want := walk(t, tree.NewTreeFrom(a.cache.Reader(ref))), walk(t, tree.NewTreeFrom(full.cache.Reader(full.ref))); !slices.Equal(got, want) {
		t.Fatal("the incremental build serves another tree than a full one")
	}
}

// TestListingPrefetchesChildParts: listing a directory fetches the parts
// of its split-off subdirectories in the background, so that walking into
// them then costs no fetch; a lookup alone prefetches nothing.
func TestListingPrefetchesChildParts(t *testing.T) {
	lg := testLog(t, 6, 20)
	f := build(t, lg, 25, storetest.NewCounting(storetest.NewMem()))
	tr := tree.NewTreeFrom(f.cache.Reader(f.ref))
	if _, err := tr.Lookup("/d0"); err != nil {
		t.Fatal(err)
	}
	if n := f.cache.Fetches(); n != 1 {
		t.Fatalf("a lookup in the root part fetched %d parts", n)
	}
	var split []string
	r := f.cache.Reader(f.ref)
	root, _ := f.cache.get(context.Background(), f.ref, "/")
	root.each("", func(e raw) bool {
		if e.child {
			split = append(split, "/"+e.name)
		}
		return true
	})
	if len(split) < 2 {
		t.Fatalf("only %d split-off directories under /", len(split))
	}
	if err := tr.ListEach("/", func(string, *tree.Node, error) bool { return true }); err != nil {
		t.Fatal(err)
	}
	want := int64(1 + len(split))
	testsvc.WaitFor(t, "the child parts prefetched", func() bool { return f.cache.Fetches() >= want })
	for _, d := range split {
		if _, _, err := r.dirLoc(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.cache.Fetches(); n != want {
		t.Fatalf("%d fetches after walking into the prefetched parts, want %d", n, want)
	}
}
