package objects

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// state lists every live object (primary key, slot-1 key, value) through
// both ReadObject and the ordered indexes, checking that they agree.
func batchState(t *testing.T, l *Log) []string {
	t.Helper()
	var out []string
	if err := l.Scan(0, nil, func(o Object) bool {
		r, err := l.ReadObject(o.Key(0))
		if err != nil {
			t.Fatalf("ReadObject(%q): %v", o.Key(0), err)
		}
		out = append(out, fmt.Sprintf("%s|%s|%s", r.Key(0), r.Key(1), r.Value()))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	var bySlot1 []string
	if err := l.Scan(1, nil, func(o Object) bool {
		bySlot1 = append(bySlot1, fmt.Sprintf("%s|%s|%s", o.Key(0), o.Key(1), o.Value()))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	a, b := slices.Sorted(slices.Values(out)), slices.Sorted(slices.Values(bySlot1))
	if !slices.Equal(a, b) {
		t.Fatalf("slot 0 and slot 1 disagree: %d vs %d objects", len(a), len(b))
	}
	if n := l.Stats().Objects; n != len(out) {
		t.Fatalf("Stats.Objects = %d, scan found %d", n, len(out))
	}
	return a
}

// A large Ingest (the parallel path of applyBatch) into a log that already
// holds some of the keys, with overwrites and deletes on both sides.
func TestIngestLargeBatch(t *testing.T) {
	const n = 6000
	put := func(l *Log, i int, tag string) {
		k := fmt.Appendf(nil, "/d%d/f%05d", i%7, i)
		if err := l.WriteKeys([][]byte{k, fmt.Appendf(nil, "/d%d\x00%s%05d", i%7, tag, i)}, []byte(tag)); err != nil {
			t.Fatal(err)
		}
	}
	src := openT(t, t.TempDir(), Options{Sync: SyncNone, SegmentSize: 1 << 30})
	for _, tag := range []string{"a0", "a"} { // versions above the other log's
		for i := range n {
			put(src, i, tag)
		}
	}
	for i := 0; i < n; i += 5 {
		put(src, i, "a2") // overwrite, new slot-1 key
	}
	for i := 1; i < n; i += 7 {
		if err := src.Delete(fmt.Appendf(nil, "/d%d/f%05d", i%7, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Seal(); err != nil {
		t.Fatal(err)
	}
	var data []byte
	for _, si := range src.Segments() {
		if si.Sealed {
			d, err := os.ReadFile(si.Path)
			if err != nil {
				t.Fatal(err)
			}
			data = d
		}
	}
	src.Close()

	dir := t.TempDir()
	l := openT(t, dir, Options{Sync: SyncNone})
	// Pre-existing objects, with versions below the ingested ones: replaced,
	// or deleted by the source's tombstones, or (keys the source never
	// wrote) kept.
	for i := 0; i < n; i += 3 {
		put(l, i, "b")
	}
	for i := 0; i < 200; i++ {
		put(l, n+i, "c")
	}
	for i := 0; i < n; i += 11 {
		put(l, i, "late") // overwritten locally, then by the source
	}
	if _, err := l.Ingest(data); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < n; i += 13 {
		put(l, i, "after") // after the ingest: wins
	}
	got := batchState(t, l)
	if len(got) == 0 {
		t.Fatal("empty")
	}
	want := map[int]string{}
	for i := range n + 200 {
		switch {
		case i >= n:
			want[i] = "c"
		case i%13 == 2:
			want[i] = "after"
		case i%7 == 1:
			// deleted by the source
		case i%5 == 0:
			want[i] = "a2"
		default:
			want[i] = "a"
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d objects, want %d", len(got), len(want))
	}
	for _, s := range got {
		var d, i int
		fmt.Sscanf(s, "/d%d/f%05d", &d, &i)
		if v := s[strings.LastIndexByte(s, '|')+1:]; v != want[i] {
			t.Fatalf("%s: value %q, want %q", s, v, want[i])
		}
	}
	// A replay gives the same state.
	l.Close()
	l = openT(t, dir, Options{Sync: SyncNone})
	defer l.Close()
	if again := batchState(t, l); !slices.Equal(got, again) {
		t.Fatalf("reopen differs: %d vs %d objects", len(got), len(again))
	}
}
