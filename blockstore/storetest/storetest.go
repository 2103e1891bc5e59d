// Package storetest is the blockstore.Store contract as a test suite that
// every store and every wrapper runs (Run for blocks, RunRefs for refs),
// so that a new store gets the contract's tests by calling them, and the
// test doubles that tests of stores and their users share: Mem, Gate,
// Fail, Corrupt, Counting and deterministic random blocks.
//
// It is imported by tests only; it is a package of its own (not _test
// files) so that tests of other packages can import it.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"blockfs/blockstore"
)

// Run runs the Store contract against stores from newStore, which returns
// a fresh, empty store for each subtest (cleaned up with t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) blockstore.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("EmptyBlock", func(t *testing.T) { testEmptyBlock(t, newStore(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newStore(t)) })
	t.Run("PutWrongHash", func(t *testing.T) { testPutWrongHash(t, newStore(t)) })
	t.Run("PutTooLarge", func(t *testing.T) { testPutTooLarge(t, newStore(t)) })
	t.Run("PutIdempotent", func(t *testing.T) { testPutIdempotent(t, newStore(t)) })
	t.Run("GetBadBuffer", func(t *testing.T) { testGetBadBuffer(t, newStore(t)) })
	t.Run("ListAndDelete", func(t *testing.T) { testListAndDelete(t, newStore(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newStore(t)) })
	t.Run("Map", func(t *testing.T) { testMap(t, newStore(t)) })
	t.Run("PutHashed", func(t *testing.T) { testPutHashed(t, newStore(t)) })
	t.Run("Canceled", func(t *testing.T) { testCanceled(t, newStore(t)) })
	t.Run("DeleteBatch", func(t *testing.T) { testDeleteBatch(t, newStore(t)) })
}

// put stores data and returns its locator.
func put(t *testing.T, s blockstore.Store, data []byte) blockstore.Locator {
	t.Helper()
	loc := blockstore.LocatorOf(data)
	if err := s.Put(context.Background(), loc.Hash, data); err != nil {
		t.Fatalf("Put %v: %v", loc, err)
	}
	return loc
}

// mustGet reads loc and checks the bytes are want.
func mustGet(t *testing.T, s blockstore.Store, loc blockstore.Locator, want []byte) {
	t.Helper()
	dst := make([]byte, loc.Size+7) // a larger dst is fine
	n, err := s.Get(context.Background(), loc, dst)
	if err != nil {
		t.Fatalf("Get %v: %v", loc, err)
	}
	if n != len(want) || !bytes.Equal(dst[:n], want) {
		t.Fatalf("Get %v: %d bytes, not the %d stored", loc, n, len(want))
	}
}

func mustHave(t *testing.T, s blockstore.Store, h blockstore.Hash, want bool) {
	t.Helper()
	ok, err := s.Has(context.Background(), h)
	if err != nil || ok != want {
		t.Fatalf("Has %v = %v, %v; want %v", h, ok, err, want)
	}
}

func testRoundTrip(t *testing.T, s blockstore.Store) {
	blocks := [][]byte{[]byte("x"), Block(1, 1000), Block(2, 256<<10)}
	for _, b := range blocks {
		loc := put(t, s, b)
		mustHave(t, s, loc.Hash, true)
		mustGet(t, s, loc, b)
	}
}

func testEmptyBlock(t *testing.T, s blockstore.Store) {
	loc := put(t, s, nil)
	mustHave(t, s, loc.Hash, true)
	if n, err := s.Get(context.Background(), loc, nil); n != 0 || err != nil {
		t.Fatalf("Get of the empty block = %d, %v", n, err)
	}
}

func testMissing(t *testing.T, s blockstore.Store) {
	ctx := context.Background()
	put(t, s, []byte("another block"))
	loc := blockstore.LocatorOf([]byte("never stored"))
	if _, err := s.Get(ctx, loc, make([]byte, loc.Size)); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("Get of a missing block: %v, want ErrNotFound", err)
	}
	mustHave(t, s, loc.Hash, false)
	if err := s.Delete(ctx, loc.Hash); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("Delete of a missing block: %v, want ErrNotFound", err)
	}
}

func testPutWrongHash(t *testing.T, s blockstore.Store) {
	h := blockstore.Sum([]byte("right"))
	if err := s.Put(context.Background(), h, []byte("wrong")); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("Put of bytes that do not hash to h: %v, want ErrCorrupt", err)
	}
	mustHave(t, s, h, false)
	mustHave(t, s, blockstore.Sum([]byte("wrong")), false)
}

func testPutTooLarge(t *testing.T, s blockstore.Store) {
	data := make([]byte, blockstore.MaxBlockSize+1)
	h := blockstore.Sum(data)
	if err := s.Put(context.Background(), h, data); !errors.Is(err, blockstore.ErrTooLarge) {
		t.Fatalf("Put of %d bytes: %v, want ErrTooLarge", len(data), err)
	}
	mustHave(t, s, h, false)
}

func testPutIdempotent(t *testing.T, s blockstore.Store) {
	b := Block(3, 5000)
	loc := put(t, s, b)
	put(t, s, b)
	mustGet(t, s, loc, b)
	n := 0
	if err := s.List(context.Background(), func(blockstore.Locator) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("List after putting one block twice: %d blocks", n)
	}
}

// testGetBadBuffer: a dst shorter than the block is refused (never a
// partial read, never a panic); a locator with the right hash but the
// wrong size is an error, not the block.
func testGetBadBuffer(t *testing.T, s blockstore.Store) {
	ctx := context.Background()
	b := Block(4, 4096)
	loc := put(t, s, b)
	if n, err := s.Get(ctx, loc, make([]byte, 100)); err == nil {
		t.Errorf("Get into a %d-byte buffer of a %d-byte block: %d bytes, no error", 100, loc.Size, n)
	}
	// Store.Get promises an error here, not which: the local stores and S3
	// say ErrCorrupt, the HTTP client the server's 502 after its retries.
	wrong := blockstore.Locator{Hash: loc.Hash, Size: loc.Size - 1}
	if n, err := s.Get(ctx, wrong, make([]byte, loc.Size)); err == nil || errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("Get with the wrong size: %d bytes, %v; want an error other than ErrNotFound", n, err)
	}
	mustGet(t, s, loc, b)
}

func testListAndDelete(t *testing.T, s blockstore.Store) {
	ctx := context.Background()
	want := map[blockstore.Locator]bool{}
	for i := range 20 {
		want[put(t, s, Block(uint64(100+i), 10*i))] = true
	}
	list := func() map[blockstore.Locator]bool {
		t.Helper()
		got := map[blockstore.Locator]bool{}
		if err := s.List(ctx, func(l blockstore.Locator) error {
			if got[l] {
				t.Errorf("List reported %v twice", l)
			}
			got[l] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := list(); !sameSet(got, want) {
		t.Fatalf("List gave %d blocks, want the %d stored (%v)", len(got), len(want), got)
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.List(ctx, func(blockstore.Locator) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List with a failing fn: %v after %d calls, want fn's error after 1", err, calls)
	}
	var gone blockstore.Locator
	for l := range want {
		gone = l
		break
	}
	if err := s.Delete(ctx, gone.Hash); err != nil {
		t.Fatal(err)
	}
	delete(want, gone)
	mustHave(t, s, gone.Hash, false)
	if _, err := s.Get(ctx, gone, make([]byte, gone.Size)); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("Get of a deleted block: %v, want ErrNotFound", err)
	}
	if got := list(); !sameSet(got, want) {
		t.Fatalf("List after Delete gave %d blocks, want %d", len(got), len(want))
	}
}

func sameSet(a, b map[blockstore.Locator]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// testConcurrent: writers and readers of the same and of distinct blocks
// at once (run it with -race).
func testConcurrent(t *testing.T, s blockstore.Store) {
	ctx := context.Background()
	shared := Block(5, 3000)
	sharedLoc := blockstore.LocatorOf(shared)
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*4)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := Block(uint64(200+w), 2000+w)
			for _, b := range [][]byte{shared, own} {
				loc := blockstore.LocatorOf(b)
				if err := s.Put(ctx, loc.Hash, b); err != nil {
					errs <- err
					return
				}
				dst := make([]byte, loc.Size)
				if n, err := s.Get(ctx, loc, dst); err != nil || !bytes.Equal(dst[:n], b) {
					errs <- errors.Join(errors.New("concurrent Get: wrong bytes"), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mustGet(t, s, sharedLoc, shared)
}

// testMap checks the Mapper that blockstore.As finds, if any: a mapping
// has the block's bytes and unmaps more than once; a store may always
// decline with errors.ErrUnsupported (a cache miss, no mlock), never serve
// a missing block.
func testMap(t *testing.T, s blockstore.Store) {
	m, ok := blockstore.As[blockstore.Mapper](s)
	if !ok {
		t.Skip("no Mapper in this store's Unwrap chain")
	}
	ctx := context.Background()
	b := Block(6, 10000)
	loc := put(t, s, b)
	mp, err := m.Map(ctx, loc)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		t.Logf("Map declined a stored block: %v", err)
	case err != nil:
		t.Fatalf("Map of a stored block: %v", err)
	default:
		if !bytes.Equal(mp.Bytes(), b) {
			t.Errorf("Map gave %d bytes, not the %d stored", len(mp.Bytes()), len(b))
		}
		if err := mp.Unchanged(); err != nil {
			t.Errorf("a block file nobody touched: Unchanged says %v", err)
		}
		if err := mp.Unmap(); err != nil {
			t.Errorf("unmap: %v", err)
		}
		if err := mp.Unmap(); err != nil {
			t.Errorf("second unmap: %v", err)
		}
	}
	missing := blockstore.LocatorOf([]byte("not stored, not mapped"))
	if _, err := m.Map(ctx, missing); !errors.Is(err, blockstore.ErrNotFound) && !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Map of a missing block: %v, want ErrNotFound or ErrUnsupported", err)
	}
	wrong := blockstore.Locator{Hash: loc.Hash, Size: loc.Size + 1}
	if _, err := m.Map(ctx, wrong); !errors.Is(err, blockstore.ErrCorrupt) && !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Map with the wrong size: %v, want ErrCorrupt or ErrUnsupported", err)
	}
}

// testPutHashed checks blockstore.PutHashed, which goes through the
// HashedPutter As finds, if any, else Put.
func testPutHashed(t *testing.T, s blockstore.Store) {
	_, has := blockstore.As[blockstore.HashedPutter](s)
	t.Logf("HashedPutter in the chain: %v", has)
	b := Block(7, 7000)
	loc := blockstore.LocatorOf(b)
	if err := blockstore.PutHashed(context.Background(), s, loc.Hash, b); err != nil {
		t.Fatal(err)
	}
	mustHave(t, s, loc.Hash, true)
	mustGet(t, s, loc, b)
}

// testCanceled: a call with an ended context fails and stores nothing.
func testCanceled(t *testing.T, s blockstore.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Block(8, 100)
	loc := blockstore.LocatorOf(b)
	if err := s.Put(ctx, loc.Hash, b); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context: %v, want context.Canceled", err)
	}
	mustHave(t, s, loc.Hash, false)
	put(t, s, b)
	if _, err := s.Get(ctx, loc, make([]byte, loc.Size)); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context: %v, want context.Canceled", err)
	}
}
