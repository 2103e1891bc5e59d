package mount_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/internal/testsvc"
)

// TestTraceRecordedAndReplayed: a mount records which blocks reads need
// after its trigger opens and publishes the trace; a fresh mount opening
// the same trigger fetches exactly those blocks before any read asks, so
// the reads that follow cost no GET.
func TestTraceRecordedAndReplayed(t *testing.T) {
	store, files := packedStore(t, []string{"a", "b", "c", "d"}, 40, 32<<10)
	opts := mount.Options{TraceTrigger: "/p/a/f000.py", SiblingPrefetch: -1, Readahead: -1}
	job := []string{"/p/c/f003.py", "/p/a/f020.py", "/p/d/f039.py", "/p/c/f030.py"}
	run := func(tm *fstest.Mount) {
		t.Helper()
		for _, p := range append([]string{opts.TraceTrigger}, job...) {
			if got, err := os.ReadFile(tm.Path(p)); err != nil || !bytes.Equal(got, files[p]) {
				t.Fatalf("%s: %v", p, err)
			}
		}
	}
	rec := fstest.MountStore(t, store, opts)
	var want []blockstore.Locator // the packs, in the order the job first needs them
	for _, p := range append([]string{opts.TraceTrigger}, job...) {
		if l := rec.BlocksOf(t, p)[0]; !containsLoc(want, l) {
			want = append(want, l)
		}
	}
	if len(want) < 4 {
		t.Fatalf("the job needs only %d packs", len(want))
	}
	run(rec)
	rec.FinishTrace()
	refs, _ := blockstore.As[blockstore.RefStore](rec.Vol.Blocks)
	trigger, err := rec.Vol.Tree.Lookup(opts.TraceTrigger)
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := refs.GetRef(context.Background(), "traces/"+strings.TrimPrefix(mount.ContentHash(trigger), "sha256:"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := mount.DecodeTrace(data)
	if err != nil {
		t.Fatal(err)
	}
	if !equalLocs(got, want) {
		t.Fatalf("recorded %v\nwant the order of first need %v", got, want)
	}

	// A fresh mount: open the trigger, and before reading anything the
	// trace's blocks are all fetched, once each.
	tm := fstest.MountStore(t, store, opts)
	f, err := os.Open(tm.Path(opts.TraceTrigger))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	testsvc.WaitFor(t, "the replay", func() bool {
		return tm.Pool().Stats().InFlight == 0 && tm.Store.Gets() >= int64(len(want))
	})
	for _, l := range want {
		if n := tm.Store.GetsOf(l.Hash); n != 1 {
			t.Errorf("block %v fetched %d times by the replay", l, n)
		}
	}
	before := tm.Store.Gets()
	run(tm)
	if after := tm.Store.Gets(); before != int64(len(want)) || after != before {
		t.Errorf("replay fetched %d blocks (want %d); the job's reads then took %d more GETs", before, len(want), after-before)
	}
	// The replaying mount did not record over the published trace.
	tm.FinishTrace()
	if again, _, _ := refs.GetRef(context.Background(), "traces/"+strings.TrimPrefix(mount.ContentHash(trigger), "sha256:")); !bytes.Equal(again, data) {
		t.Error("the trace changed")
	}
}

func containsLoc(ls []blockstore.Locator, l blockstore.Locator) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

func equalLocs(a, b []blockstore.Locator) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeTraceRejects(t *testing.T) {
	l := blockstore.LocatorOf([]byte("x"))
	if got, err := mount.DecodeTrace(mount.EncodeTrace([]blockstore.Locator{l, l})); err != nil || len(got) != 2 {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for name, b := range map[string][]byte{
		"unterminated":  []byte(l.String()),
		"not a locator": []byte("hello\n"),
		"empty line":    []byte(l.String() + "\n\n"),
	} {
		if _, err := mount.DecodeTrace(b); !errors.Is(err, mount.ErrBadTrace) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzDecodeTrace: DecodeTrace never panics, and what it accepts
// re-encodes to the same bytes.
func FuzzDecodeTrace(f *testing.F) {
	f.Add(mount.EncodeTrace([]blockstore.Locator{blockstore.LocatorOf([]byte("a")), blockstore.LocatorOf(nil)}))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		locs, err := mount.DecodeTrace(b)
		if err != nil {
			return
		}
		if !bytes.Equal(mount.EncodeTrace(locs), b) {
			t.Fatal("accepted bytes do not re-encode identically")
		}
	})
}
