package blockstore

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

func TestDirRefs(t *testing.T) {
	ctx := context.Background()
	d, err := OpenDir(filepath.Join(t.TempDir(), "store"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.GetRef(ctx, "meta/head"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing ref: %v", err)
	}
	v1, err := d.PutRef(ctx, "meta/head", []byte("one"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutRef(ctx, "meta/head", []byte("again"), ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("create over an existing ref: %v", err)
	}
	v2, err := d.PutRef(ctx, "meta/head", []byte("two"), v1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutRef(ctx, "meta/head", []byte("stale"), v1); !errors.Is(err, ErrConflict) {
		t.Fatalf("update from a stale version: %v", err)
	}
	data, v, err := d.GetRef(ctx, "meta/head")
	if err != nil || string(data) != "two" || v != v2 {
		t.Fatalf("GetRef = %q %s %v", data, v, err)
	}
	// Refs are not blocks.
	if err := d.List(ctx, func(l Locator) error { t.Errorf("List reported %v", l); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "../x", "a/../b", "/abs", "a//b", "A", "a/b/c", "a b", ".", "x/.."} {
		if _, err := d.PutRef(ctx, bad, nil, ""); !errors.Is(err, ErrMalformed) {
			t.Errorf("PutRef(%q): %v", bad, err)
		}
	}
}

// TestDirRefsNoLostUpdates: many writers increment one counter with
// read-compare-swap loops; every increment must survive.
func TestDirRefsNoLostUpdates(t *testing.T) {
	ctx := context.Background()
	d, err := OpenDir(filepath.Join(t.TempDir(), "store"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutRef(ctx, "counter", []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	conflicts := 0
	var mu sync.Mutex
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					data, v, err := d.GetRef(ctx, "counter")
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(string(data))
					_, err = d.PutRef(ctx, "counter", []byte(strconv.Itoa(n+1)), v)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrConflict) {
						t.Error(err)
						return
					}
					mu.Lock()
					conflicts++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	data, _, _ := d.GetRef(ctx, "counter")
	if string(data) != strconv.Itoa(writers*each) {
		t.Fatalf("counter = %s, want %d (lost updates)", data, writers*each)
	}
	t.Logf("%d conflicts retried", conflicts)
}
