package objects

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// raiseVersion makes l's next write get version next, as if l had ingested
// a segment reaching next-1 (a test's shortcut to a log that issues
// extreme versions through the ordinary write path).
func raiseVersion(l *Log, next uint64) {
	l.w.mu.Lock()
	l.w.nextVer = next
	l.w.mu.Unlock()
}

// poisonedSegment is a sealed segment, written by the package's own write
// path, whose one object carries version ver.
func poisonedSegment(t *testing.T, key string, ver uint64) []byte {
	t.Helper()
	l := openT(t, t.TempDir(), Options{})
	defer l.Close()
	raiseVersion(l, ver)
	wk(t, l, "poison", key, "/\x00"+key[1:])
	if got := version(t, l, key); got != ver {
		t.Fatalf("poisoned object has version %d, want %d", got, ver)
	}
	segs := sealedSegments(t, l)
	if len(segs) != 1 {
		t.Fatalf("%d segments, want 1", len(segs))
	}
	return segs[0]
}

// TestIngestRejectsVersionPoison: a segment carrying version 2^64-2 used to
// pass Ingest and leave only the top version to issue, which Ingest rejects
// everywhere, bricking the store. Now Ingest refuses the segment with a
// *CorruptError naming the version, changes nothing, and the log stays
// usable: a normal segment ingests, new writes get versions above it, and
// another log accepts what this one writes afterwards.
func TestIngestRejectsVersionPoison(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	defer l.Close()
	wk(t, l, "mine", "/mine", "/\x00mine")
	before, segs := fullState(t, l), fmt.Sprint(l.Segments())

	poison := poisonedSegment(t, "/evil", math.MaxUint64-1)
	_, err := l.Ingest(poison)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Segment != ingestName {
		t.Fatalf("Ingest of a poisoned segment: %v, want a *CorruptError", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("implausible version %d", uint64(math.MaxUint64-1))) {
		t.Fatalf("error does not name the version: %v", err)
	}
	if fullState(t, l) != before || fmt.Sprint(l.Segments()) != segs {
		t.Fatal("rejected Ingest changed the log")
	}
	if v := l.MaxVersion(); v != 1 {
		t.Fatalf("MaxVersion %d after the rejected ingest, want 1", v)
	}

	// The bound: one object may reach MaxVersion+1+MaxVersionGap, not one more.
	if _, err := l.Ingest(poisonedSegment(t, "/far", 1+1+MaxVersionGap+1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Ingest one version past the bound: %v, want ErrCorrupt", err)
	}
	edge := uint64(1 + 1 + MaxVersionGap)
	if _, err := l.Ingest(poisonedSegment(t, "/edge", edge)); err != nil {
		t.Fatalf("Ingest at the bound: %v", err)
	}

	// A normal segment from another log, then a local write above both.
	src := openT(t, t.TempDir(), Options{})
	wk(t, src, "theirs", "/theirs", "/\x00theirs")
	normal := sealedSegments(t, src)
	src.Close()
	ingestAll(t, l, normal)
	mustRead(t, l, "/theirs", "theirs")
	wk(t, l, "after", "/after", "/\x00after")
	if v := version(t, l, "/after"); v != edge+1 {
		t.Fatalf("write after ingest got version %d, want %d", v, edge+1)
	}

	// What l publishes now is acceptable to a log that saw the same segments.
	mount := openT(t, t.TempDir(), Options{})
	defer mount.Close()
	var mine [][]byte
	for _, b := range sealedSegments(t, l) {
		if h, _ := decodeSegHeaderAnyID(b); h.kind != kindIngested {
			mine = append(mine, b)
		}
	}
	ingestAll(t, mount, normal, [][]byte{poisonedSegment(t, "/edge", edge)}, mine)
	mustRead(t, mount, "/after", "after")
	if _, err := mount.Ingest(poison); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("second log: Ingest of the poisoned segment: %v, want ErrCorrupt", err)
	}
}

// TestVersionSpaceExhausted: a log whose counter reached the top (only
// possible from local files, since Ingest bounds what it takes) refuses new
// objects with an error instead of issuing the top version, which no other
// log could ingest, or wrapping to 0, which would lose to everything.
// Reads and deletes go on.
func TestVersionSpaceExhausted(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	defer l.Close()
	raiseVersion(l, math.MaxUint64-1)
	wk(t, l, "last", "/last", "/\x00last")
	if v := version(t, l, "/last"); v != math.MaxUint64-1 {
		t.Fatalf("version %d, want %d", v, uint64(math.MaxUint64-1))
	}
	err := l.Write([]byte("/more"), []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "version space exhausted") {
		t.Fatalf("write past the top: %v, want version space exhausted", err)
	}
	if err := l.MultiWrite([]Entry{{Keys: [][]byte{[]byte("/a")}}, {Keys: [][]byte{[]byte("/b")}}}); err == nil {
		t.Fatal("MultiWrite past the top succeeded")
	}
	mustMissing(t, l, "/more")
	mustRead(t, l, "/last", "last")
	if err := l.Delete([]byte("/last")); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	mustMissing(t, l, "/last")
	if v := l.MaxVersion(); v != math.MaxUint64-1 {
		t.Fatalf("MaxVersion %d", v)
	}
}
