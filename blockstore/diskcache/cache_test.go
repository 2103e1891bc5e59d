package diskcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
)

var ctx = context.Background()

// newBackend returns a counting store over a fresh DirStore.
func newBackend(t testing.TB) *storetest.Counting {
	t.Helper()
	d, err := blockstore.OpenDir(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	return storetest.NewCounting(d)
}

// putBlocks stores n distinct pseudo-random blocks of the given size (or of
// sizes drawn from [size/2, size] when vary) and returns their locators.
func putBlocks(t testing.TB, s blockstore.Store, n, size int, seed uint64, vary bool) []blockstore.Locator {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 42))
	locs := make([]blockstore.Locator, n)
	for i := range locs {
		sz := size
		if vary {
			sz = size/2 + r.IntN(size/2+1)
		}
		b := make([]byte, sz)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		locs[i] = blockstore.LocatorOf(b)
		if err := put(s, locs[i].Hash, b); err != nil {
			t.Fatal(err)
		}
	}
	return locs
}

// put stores a block. Into a DirStore it writes the file where DirStore
// keeps it (<root>/<2 hex>/<64 hex>) without DirStore.Put's two fsyncs per
// block, which would dominate these tests' run time.
func put(s blockstore.Store, h blockstore.Hash, b []byte) error {
	d, ok := blockstore.As[*blockstore.DirStore](s)
	if !ok {
		return s.Put(ctx, h, b)
	}
	hs := h.String()
	if err := os.MkdirAll(filepath.Join(d.Root(), hs[:2]), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.Root(), hs[:2], hs), b, 0o444)
}

func openCache(t testing.TB, dir string, back blockstore.Store, opts Options) *Cache {
	t.Helper()
	c, err := Open(dir, back, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get reads loc through c as every reader outside a Pool does (verify,
// then hand the verified bytes back with Keep), and checks the bytes.
func get(t testing.TB, c *Cache, loc blockstore.Locator) {
	t.Helper()
	buf := make([]byte, loc.Size)
	if err := blockstore.ReadVerified(ctx, c, loc, buf); err != nil {
		t.Fatalf("read %v: %v", loc, err)
	}
}

// diskUsage sums the sizes of the files under blocks/ and tmp/ and counts
// the block files.
func diskUsage(t testing.TB, dir string) (bytes int64, files int) {
	t.Helper()
	for _, sub := range []string{blocksName, tmpName} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			bytes += fi.Size()
			if sub == blocksName {
				files++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return bytes, files
}

func fileSize(loc blockstore.Locator) int64 { return loc.Size + trailerLen }

func TestHitMiss(t *testing.T) {
	back := newBackend(t)
	locs := putBlocks(t, back, 4, 1000, 1, false)
	dir := t.TempDir()
	c := openCache(t, dir, back, Options{MaxBytes: 1 << 20})
	for range 3 {
		for _, l := range locs {
			get(t, c, l)
		}
	}
	st := c.Stats()
	if st.Misses != 4 || st.Hits != 8 || st.Inserts != 4 || st.Entries != 4 || st.Bytes != 4*fileSize(locs[0]) || st.HitBytes != 8*1000 {
		t.Fatalf("stats %+v", st)
	}
	if g := back.Gets(); g != 4 {
		t.Fatalf("backend Gets = %d, want 4", g)
	}
	if b, n := diskUsage(t, dir); b != st.Bytes || n != 4 {
		t.Fatalf("disk holds %d bytes in %d files; stats say %d", b, n, st.Bytes)
	}
	// Stats has the documented snake_case JSON names.
	js, _ := json.Marshal(st)
	for _, k := range []string{`"hits":8`, `"misses":4`, `"corrupt_dropped":0`, `"evictions":0`, `"max_bytes":1048576`} {
		if !strings.Contains(string(js), k) {
			t.Errorf("JSON %s lacks %s", js, k)
		}
	}
}

func TestSizeBoundNeverExceeded(t *testing.T) {
	back := newBackend(t)
	locs := putBlocks(t, back, 40, 4000, 2, true)
	big := putBlocks(t, back, 1, 30000, 3, false)[0] // larger than the whole cache
	const max = 20000
	dir := t.TempDir()
	c := openCache(t, dir, back, Options{MaxBytes: max})
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 200 {
		// Skewed: low indexes are hot.
		l := locs[min(r.IntN(len(locs)), r.IntN(len(locs)))]
		if i%25 == 0 {
			l = big
		}
		get(t, c, l)
		st := c.Stats()
		if st.Bytes > max {
			t.Fatalf("step %d: Bytes %d > MaxBytes %d", i, st.Bytes, max)
		}
		if b, n := diskUsage(t, dir); b != st.Bytes || int64(n) != st.Entries {
			t.Fatalf("step %d: disk %d bytes/%d files, stats %d bytes/%d entries", i, b, n, st.Bytes, st.Entries)
		}
	}
	st := c.Stats()
	if st.Evictions == 0 || st.Hits == 0 || st.Skipped != 8 {
		t.Fatalf("stats %+v", st)
	}
}

// scanScenario warms a working set (read three times), closes and reopens
// the cache if restart is set, scans scanN other blocks once (three times
// the cache), then reads the working set again and returns how many of
// those reads reached the backend.
func scanScenario(t *testing.T, opts Options, restart bool) (wsGets int64, st Stats) {
	const size, cacheBlocks, wsN, scanN = 1024, 32, 8, 96
	back := newBackend(t)
	ws := putBlocks(t, back, wsN, size, 10, false)
	scan := putBlocks(t, back, scanN, size, 11, false)
	opts.MaxBytes = cacheBlocks * (size + trailerLen)
	dir := t.TempDir()
	c := openCache(t, dir, back, opts)
	for range 3 {
		for _, l := range ws {
			get(t, c, l)
		}
	}
	if restart {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c = openCache(t, dir, back, opts)
	}
	for _, l := range scan {
		get(t, c, l)
	}
	back.Reset()
	for _, l := range ws {
		get(t, c, l)
	}
	return back.Gets(), c.Stats()
}

func TestScanResistance(t *testing.T) {
	lruGets, _ := scanScenario(t, Options{plainLRU: true}, false)
	gets, st := scanScenario(t, Options{}, false)
	t.Logf("working set of 8 re-read after a 3x-cache scan: plain LRU %d backend Gets, S3-FIFO %d", lruGets, gets)
	if lruGets != 8 {
		t.Errorf("plain LRU: %d backend Gets for the working set, want 8 (all lost)", lruGets)
	}
	if gets != 0 {
		t.Errorf("S3-FIFO: %d backend Gets for the working set, want 0 (stats %+v)", gets, st)
	}
	if st.Promotions != 8 {
		t.Errorf("promotions = %d, want 8", st.Promotions)
	}
}

func TestRestartServesFromDisk(t *testing.T) {
	back := newBackend(t)
	locs := putBlocks(t, back, 10, 2000, 4, true)
	dir := t.TempDir()
	c := openCache(t, dir, back, Options{MaxBytes: 1 << 20})
	for _, l := range locs {
		get(t, c, l)
	}
	want := c.Stats().Bytes
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, withState := range []bool{true, false} {
		if !withState {
			os.Remove(filepath.Join(dir, stateName))
		}
		back.Reset()
		c := openCache(t, dir, back, Options{MaxBytes: 1 << 20})
		if st := c.Stats(); st.Entries != 10 || st.Bytes != want {
			t.Fatalf("state %v: reopened with %+v, want 10 entries, %d bytes", withState, st, want)
		}
		for _, l := range locs {
			get(t, c, l)
		}
		if g, st := back.Gets(), c.Stats(); g != 0 || st.Hits != 10 {
			t.Fatalf("state %v: %d backend Gets after restart, stats %+v", withState, g, st)
		}
		c.Close()
	}
	// Reopening smaller evicts down to the new bound.
	c = openCache(t, dir, back, Options{MaxBytes: want / 2})
	if st := c.Stats(); st.Bytes > want/2 || st.Evictions == 0 {
		t.Fatalf("reopened smaller: %+v", st)
	}
	if b, _ := diskUsage(t, dir); b != c.Stats().Bytes {
		t.Fatalf("disk %d bytes, stats %d", b, c.Stats().Bytes)
	}
}

func TestRestartKeepsPolicyState(t *testing.T) {
	// The working set's hit counts survive Close/Open, so the scan after
	// the restart still cannot flush it.
	gets, _ := scanScenario(t, Options{}, true)
	if gets != 0 {
		t.Fatalf("%d backend Gets for the working set after restart + scan, want 0", gets)
	}
}

func TestDamagedCacheFiles(t *testing.T) {
	damage := map[string]func(p string, size int64) error{
		"truncated":      func(p string, size int64) error { return os.Truncate(p, size-1) },
		"trailer cut":    func(p string, size int64) error { return os.Truncate(p, size+trailerLen-3) },
		"empty":          func(p string, size int64) error { return os.Truncate(p, 0) },
		"data bit flip":  func(p string, size int64) error { return flip(p, size/2) },
		"trailer flip":   func(p string, size int64) error { return flip(p, size+9) },
		"appended junk":  func(p string, size int64) error { return appendTo(p, []byte("junk")) },
		"removed":        func(p string, size int64) error { return os.Remove(p) },
		"swapped blocks": nil, // set below: another block's (valid) file under this name
	}
	for name, fn := range damage {
		for _, restart := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/restart=%v", name, restart), func(t *testing.T) {
				back := newBackend(t)
				locs := putBlocks(t, back, 2, 3000, 5, false)
				loc := locs[0]
				dir := t.TempDir()
				c := openCache(t, dir, back, Options{MaxBytes: 1 << 20})
				get(t, c, locs[0])
				get(t, c, locs[1])
				if restart {
					c.Close()
				}
				p := c.path(loc.Hash)
				var err error
				if fn == nil {
					err = copyFile(c.path(locs[1].Hash), p)
				} else {
					err = fn(p, loc.Size)
				}
				if err != nil {
					t.Fatal(err)
				}
				if restart {
					c = openCache(t, dir, back, Options{MaxBytes: 1 << 20})
				}
				back.Reset()
				get(t, c, loc) // detected, dropped, refetched
				get(t, c, loc) // and cached again
				st := c.Stats()
				if g := back.Gets(); g != 1 {
					t.Fatalf("backend Gets = %d, want 1", g)
				}
				wantDropped := int64(1)
				if name == "removed" && restart {
					wantDropped = 0 // never indexed: an ordinary miss
				}
				if st.CorruptDropped != wantDropped || st.Inserts < 1 {
					t.Fatalf("stats %+v", st)
				}
				if b, n := diskUsage(t, dir); b != st.Bytes || n != 2 {
					t.Fatalf("disk %d bytes/%d files, stats %+v", b, n, st)
				}
			})
		}
	}
}

func flip(p string, off int64) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return err
	}
	b[0] ^= 0x10
	_, err = f.WriteAt(b[:], off)
	return err
}

func appendTo(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(b)
	return err
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

func TestExclusiveOwnership(t *testing.T) {
	back := newBackend(t)
	dir := t.TempDir()
	c := openCache(t, dir, back, Options{MaxBytes: 1 << 20})
	_, err := Open(dir, back, Options{MaxBytes: 1 << 20})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("error %q should name %s and the holder's pid", err, dir)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	openCache(t, dir, back, Options{MaxBytes: 1 << 20}).Close()
}

func TestOpenRejectsBadOptions(t *testing.T) {
	back := newBackend(t)
	if _, err := Open(t.TempDir(), back, Options{}); err == nil {
		t.Fatal("Open with MaxBytes 0 succeeded")
	}
	if _, err := Open(t.TempDir(), nil, Options{MaxBytes: 1}); err == nil {
		t.Fatal("Open with nil backend succeeded")
	}
}

func TestBackendErrorsPassThroughUncached(t *testing.T) {
	back := newBackend(t)
	missing := blockstore.LocatorOf([]byte("not stored"))
	c := openCache(t, t.TempDir(), back, Options{MaxBytes: 1 << 20})
	buf := make([]byte, missing.Size)
	for range 2 {
		if _, err := c.Get(ctx, missing, buf); !errors.Is(err, blockstore.ErrNotFound) {
			t.Fatalf("Get missing: %v, want ErrNotFound", err)
		}
	}
	if g, st := back.Gets(), c.Stats(); g != 2 || st.BackendErrors != 2 || st.Entries != 0 {
		t.Fatalf("backend Gets %d, stats %+v", g, st)
	}

	boom := errors.New("boom")
	locs := putBlocks(t, back, 1, 100, 6, false)
	c2 := openCache(t, t.TempDir(), storetest.NewFail(back, boom), Options{MaxBytes: 1 << 20})
	if _, err := c2.Get(ctx, locs[0], make([]byte, 100)); err != boom {
		t.Fatalf("Get: %v, want the backend's error itself", err)
	}
	if st := c2.Stats(); st.Entries != 0 || st.BackendErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCorruptBackendBytesNotCached(t *testing.T) {
	for _, short := range []bool{false, true} {
		back := newBackend(t)
		locs := putBlocks(t, back, 1, 500, 8, false)
		loc := locs[0]
		dir := t.TempDir()
		c := openCache(t, dir, storetest.Corrupt{Store: back, Short: short}, Options{MaxBytes: 1 << 20})
		// The cache hands over what the backend gave.
		buf := make([]byte, loc.Size)
		n, err := c.Get(ctx, loc, buf)
		if err != nil {
			t.Fatal(err)
		}
		if short && n != 499 || !short && (n != 500 || blockstore.Sum(buf) == loc.Hash) {
			t.Fatalf("short=%v: got n=%d, not the backend's bytes", short, n)
		}
		// Its reader, a Pool, catches it and never hands it back with
		// Keep; nothing is cached.
		p := blockstore.NewPool(c, blockstore.PoolConfig{})
		if _, err := p.Get(ctx, loc); !errors.Is(err, blockstore.ErrCorrupt) {
			t.Fatalf("Pool.Get: %v, want ErrCorrupt", err)
		}
		if ps := p.Stats(); ps.VerifyFailures != 1 {
			t.Fatalf("pool stats %+v", ps)
		}
		st := c.Stats()
		if st.Misses != 2 || st.Entries != 0 || st.Inserts != 0 {
			t.Fatalf("stats %+v", st)
		}
		if b, _ := diskUsage(t, dir); b != 0 {
			t.Fatalf("%d bytes on disk", b)
		}
	}
}

func TestConcurrentGets(t *testing.T) {
	back := newBackend(t)
	locs := putBlocks(t, back, 40, 2000, 9, true)
	const max = 15 * 2000
	dir := t.TempDir()
	c := openCache(t, dir, back, Options{MaxBytes: max})
	p := blockstore.NewPool(c, blockstore.PoolConfig{MaxBytes: 8 << 10})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			buf := make([]byte, 2000)
			for range 100 {
				l := locs[min(r.IntN(len(locs)), r.IntN(len(locs)))]
				if w%2 == 0 { // straight at the cache: concurrent misses of one block
					if err := blockstore.ReadVerified(ctx, c, l, buf[:l.Size]); err != nil {
						t.Errorf("read %v: %v", l, err)
						return
					}
				} else { // through a Pool, as blockfs does
					b, err := p.Get(ctx, l)
					if err != nil {
						t.Errorf("Pool.Get %v: %v", l, err)
						return
					}
					b.Release()
				}
				if st := c.Stats(); st.Bytes > max {
					t.Errorf("Bytes %d > %d", st.Bytes, max)
					return
				}
			}
		})
	}
	wg.Wait()
	p.Close() // the pool's last fetches have been kept
	st := c.Stats()
	if b, n := diskUsage(t, dir); b != st.Bytes || int64(n) != st.Entries || b > max {
		t.Fatalf("disk %d bytes/%d files, stats %+v", b, n, st)
	}
	if st.CorruptDropped != 0 || st.WriteErrors != 0 || st.Hits == 0 {
		t.Fatalf("stats %+v", st)
	}
	// Every file left is intact: a reopened cache serves them all as hits.
	c.Close()
	c = openCache(t, dir, back, Options{MaxBytes: max})
	n := 0
	for _, l := range locs {
		if _, err := os.Stat(c.path(l.Hash)); err == nil {
			get(t, c, l)
			n++
		}
	}
	if st := c.Stats(); st.Hits != int64(n) || st.CorruptDropped != 0 {
		t.Fatalf("after reopen: %d files, stats %+v", n, st)
	}
}

func TestPassThroughAndDelete(t *testing.T) {
	back := newBackend(t)
	dir := t.TempDir()
	c := openCache(t, dir, back, Options{MaxBytes: 1 << 20})
	data := []byte("hello, block")
	loc := blockstore.LocatorOf(data)
	if err := c.Put(ctx, loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, loc.Hash, []byte("other")); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("bad Put: %v", err)
	}
	if st := c.Stats(); st.Entries != 0 {
		t.Fatalf("Put populated the cache: %+v", st)
	}
	if ok, err := c.Has(ctx, loc.Hash); !ok || err != nil {
		t.Fatalf("Has: %v %v", ok, err)
	}
	var listed []blockstore.Locator
	if err := c.List(ctx, func(l blockstore.Locator) error { listed = append(listed, l); return nil }); err != nil || len(listed) != 1 || listed[0] != loc {
		t.Fatalf("List: %v %v", listed, err)
	}
	get(t, c, loc)
	if err := c.Delete(ctx, loc.Hash); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("after Delete: %+v", st)
	}
	if _, err := c.Get(ctx, loc, make([]byte, loc.Size)); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	// A locator the cache cannot hold goes straight to the backend.
	if _, err := c.Get(ctx, blockstore.Locator{Hash: loc.Hash, Size: -1}, nil); !errors.Is(err, blockstore.ErrMalformed) {
		t.Fatalf("Get with negative size: %v", err)
	}
	// After Close, Get still works, from the backend.
	c.Close()
	other := putBlocks(t, back, 1, 10, 12, false)[0]
	get(t, c, other)
}

func TestOpenCleansUp(t *testing.T) {
	back := newBackend(t)
	dir := t.TempDir()
	c := openCache(t, dir, back, Options{MaxBytes: 1 << 20})
	c.Close()
	// A crash's leftovers: a temp file, a garbage state file, a stray.
	os.WriteFile(filepath.Join(dir, tmpName, tempPrefix+"123"), []byte("half a block"), 0o644)
	os.WriteFile(filepath.Join(dir, stateName), []byte("bdcstat1 garbage"), 0o644)
	os.WriteFile(filepath.Join(dir, blocksName, "ab", "not-a-block"), []byte("x"), 0o644)
	c = openCache(t, dir, back, Options{MaxBytes: 1 << 20})
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpName)); len(ents) != 0 {
		t.Fatalf("tmp/ not emptied: %v", ents)
	}
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkGet1MiB compares a cache hit (open, read, CRC-32C) with a read
// from a DirStore (the baseline: open, read, no checking) and with a
// DirStore read plus SHA-256 (what checking hits by hash would cost), all
// from the page cache.
func BenchmarkGet1MiB(b *testing.B) {
	const size, n = 1 << 20, 16
	d, err := blockstore.OpenDir(b.TempDir(), true)
	if err != nil {
		b.Fatal(err)
	}
	locs := putBlocks(b, d, n, size, 13, false)
	c := openCache(b, b.TempDir(), d, Options{MaxBytes: n * (size + trailerLen)})
	buf := make([]byte, size)
	for _, l := range locs {
		if err := blockstore.ReadVerified(ctx, c, l, buf); err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range []struct {
		name  string
		store blockstore.Store
	}{{"dirstore", d}, {"dirstore+sha256", shaStore{d}}, {"diskcache-hit", c}} {
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(size)
			i := 0
			for b.Loop() {
				if _, err := s.store.Get(ctx, locs[i%n], buf); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
	if st := c.Stats(); st.Misses != n {
		b.Fatalf("benchmark missed: %+v", st)
	}
}

// shaStore verifies every Get by SHA-256, for the benchmark's comparison.
type shaStore struct{ blockstore.Store }

func (s shaStore) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	n, err := s.Store.Get(ctx, loc, dst)
	if err == nil && blockstore.Sum(dst[:n]) != loc.Hash {
		err = blockstore.ErrCorrupt
	}
	return n, err
}
