package storetest

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"blockfs/blockstore"
)

// RunRefs runs the RefStore contract against the RefStore that
// blockstore.As finds in each fresh store from newStore (failing if there
// is none), so that a wrapper runs it through its Unwrap chain.
func RunRefs(t *testing.T, newStore func(t *testing.T) blockstore.Store) {
	refs := func(t *testing.T) (blockstore.Store, blockstore.RefStore) {
		s := newStore(t)
		r, ok := blockstore.As[blockstore.RefStore](s)
		if !ok {
			t.Fatalf("no RefStore in the Unwrap chain of %T", s)
		}
		return s, r
	}
	t.Run("CreateOnly", func(t *testing.T) { _, r := refs(t); testRefCreate(t, r) })
	t.Run("CompareAndSwap", func(t *testing.T) { _, r := refs(t); testRefCAS(t, r) })
	t.Run("Names", func(t *testing.T) { _, r := refs(t); testRefNames(t, r) })
	t.Run("MaxRefSize", func(t *testing.T) { _, r := refs(t); testRefSize(t, r) })
	t.Run("NotBlocks", func(t *testing.T) { testRefsNotBlocks(t, refs) })
	t.Run("NoLostUpdates", func(t *testing.T) { _, r := refs(t); testRefNoLostUpdates(t, r) })
}

func mustRef(t *testing.T, r blockstore.RefStore, name string, want []byte, wantVersion string) {
	t.Helper()
	data, v, err := r.GetRef(context.Background(), name)
	if err != nil || !bytes.Equal(data, want) || v != wantVersion {
		t.Fatalf("GetRef %s = %q, %q, %v; want %q, %q", name, data, v, err, want, wantVersion)
	}
}

func testRefCreate(t *testing.T, r blockstore.RefStore) {
	ctx := context.Background()
	if _, _, err := r.GetRef(ctx, "meta/head"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("GetRef of a missing ref: %v, want ErrNotFound", err)
	}
	if _, err := r.PutRef(ctx, "meta/head", []byte("v0"), "no-such-version"); !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("update of a missing ref: %v, want ErrConflict", err)
	}
	v1, err := r.PutRef(ctx, "meta/head", []byte("one"), "")
	if err != nil || v1 == "" {
		t.Fatalf("create: %q, %v", v1, err)
	}
	if _, err := r.PutRef(ctx, "meta/head", []byte("again"), ""); !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("create over an existing ref: %v, want ErrConflict", err)
	}
	mustRef(t, r, "meta/head", []byte("one"), v1)
}

func testRefCAS(t *testing.T, r blockstore.RefStore) {
	ctx := context.Background()
	v1, err := r.PutRef(ctx, "head", []byte("one"), "")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := r.PutRef(ctx, "head", []byte("two"), v1)
	if err != nil || v2 == v1 {
		t.Fatalf("update from the current version: %q, %v (was %q)", v2, err, v1)
	}
	if _, err := r.PutRef(ctx, "head", []byte("stale"), v1); !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("update from a stale version: %v, want ErrConflict", err)
	}
	mustRef(t, r, "head", []byte("two"), v2)
	// An empty value is a value.
	v3, err := r.PutRef(ctx, "head", nil, v2)
	if err != nil {
		t.Fatal(err)
	}
	mustRef(t, r, "head", []byte{}, v3)
}

func testRefNames(t *testing.T, r blockstore.RefStore) {
	ctx := context.Background()
	for _, bad := range []string{"", "../x", "a/../b", "/abs", "a//b", "A", "a/b/c", "a b", ".", "x/..", "a/"} {
		if _, err := r.PutRef(ctx, bad, []byte("x"), ""); !errors.Is(err, blockstore.ErrMalformed) {
			t.Errorf("PutRef(%q): %v, want ErrMalformed", bad, err)
		}
		if _, _, err := r.GetRef(ctx, bad); !errors.Is(err, blockstore.ErrMalformed) {
			t.Errorf("GetRef(%q): %v, want ErrMalformed", bad, err)
		}
	}
	for _, good := range []string{"a", "meta/head", "x-1_2.3"} {
		if _, err := r.PutRef(ctx, good, []byte(good), ""); err != nil {
			t.Errorf("PutRef(%q): %v", good, err)
		}
	}
}

func testRefSize(t *testing.T, r blockstore.RefStore) {
	ctx := context.Background()
	if _, err := r.PutRef(ctx, "big", make([]byte, blockstore.MaxRefSize+1), ""); !errors.Is(err, blockstore.ErrTooLarge) {
		t.Fatalf("PutRef of MaxRefSize+1 bytes: %v, want ErrTooLarge", err)
	}
	if _, _, err := r.GetRef(ctx, "big"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("a refused ref exists: %v", err)
	}
	full := Block(9, blockstore.MaxRefSize)
	v, err := r.PutRef(ctx, "full", full, "")
	if err != nil {
		t.Fatalf("PutRef of MaxRefSize bytes: %v", err)
	}
	mustRef(t, r, "full", full, v)
}

func testRefsNotBlocks(t *testing.T, refs func(t *testing.T) (blockstore.Store, blockstore.RefStore)) {
	s, r := refs(t)
	if _, err := r.PutRef(context.Background(), "meta/head", []byte("x"), ""); err != nil {
		t.Fatal(err)
	}
	if err := s.List(context.Background(), func(l blockstore.Locator) error {
		t.Errorf("List reported %v: refs are not blocks", l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// testRefNoLostUpdates: writers increment one counter with read-swap
// loops; every increment must survive.
func testRefNoLostUpdates(t *testing.T, r blockstore.RefStore) {
	ctx := context.Background()
	if _, err := r.PutRef(ctx, "counter", []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := increment(ctx, r, "counter"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	data, _, err := r.GetRef(ctx, "counter")
	if err != nil || string(data) != strconv.Itoa(writers*each) {
		t.Fatalf("counter = %q, %v; want %d (lost updates)", data, err, writers*each)
	}
}

// increment adds one to the decimal counter in ref name, retrying on
// conflict.
func increment(ctx context.Context, r blockstore.RefStore, name string) error {
	for {
		data, v, err := r.GetRef(ctx, name)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(data))
		if err != nil {
			return err
		}
		_, err = r.PutRef(ctx, name, []byte(strconv.Itoa(n+1)), v)
		if !errors.Is(err, blockstore.ErrConflict) {
			return err
		}
	}
}
