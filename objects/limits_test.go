package objects

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// allocated is how many bytes fn allocates on the heap.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestOversizeSegmentFileRefused: a segment file larger than any Log writes
// (here a sparse head of MaxSegmentSize+1 bytes) is a *CorruptError at Open,
// found from its size alone: nothing the size of the file is allocated
// (the head used to be read whole into the heap first).
func TestOversizeSegmentFileRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, segName(1))
	if err := os.WriteFile(path, segHeader{kind: kindHead, id: 1, verBase: 1}.encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, MaxSegmentSize+1); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{true, false} {
		var err error
		n := allocated(func() {
			var l *Log
			if l, err = Open(dir, Options{ReadOnly: ro}); err == nil {
				l.Close()
			}
		})
		var ce *CorruptError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "larger than MaxSegmentSize") {
			t.Fatalf("ReadOnly %v: Open: %v, want a *CorruptError about the size", ro, err)
		}
		if n > 64<<20 {
			t.Fatalf("ReadOnly %v: Open allocated %d bytes for a refused segment", ro, n)
		}
	}
}

// TestLyingRecordsRefused: every segment of lyingRecords (size and count
// fields that lie, with checksums that do not) is refused by Ingest with a
// *CorruptError, without allocating more than a small multiple of its
// length. The tombstone whose key is longer than any key used to be
// accepted, with its key cut to 16 bits of length.
func TestLyingRecordsRefused(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	defer l.Close()
	for i, r := range lyingRecords() {
		data := append(segHeader{kind: kindHead, id: 1, verBase: 1}.encode(), r...)
		var err error
		n := allocated(func() { _, err = l.Ingest(data) })
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Fatalf("lying segment %d: Ingest: %v, want a *CorruptError", i, err)
		}
		if limit := uint64(8*len(data) + 1<<20); n > limit {
			t.Fatalf("lying segment %d (%d bytes): Ingest allocated %d bytes", i, len(data), n)
		}
	}
	if len(l.Segments()) != 1 {
		t.Fatalf("refused segments changed the log: %v", l.Segments())
	}
}

// TestObjectReaderLyingSize: a size no record can have is an ErrCorrupt
// error before anything is allocated for it, not a panic (negative) or an
// allocation of what it claims.
func TestObjectReaderLyingSize(t *testing.T) {
	enc := AppendObject(nil, [][]byte{[]byte("k")}, []byte("value"))
	for _, size := range []int64{-1, 2, maxPayload + 1, 1 << 40} {
		o := NewObjectReader(bytes.NewReader(enc), 0, size)
		var err1, err2 error
		n := allocated(func() {
			_, err1 = o.Object()
			_, err2 = o.AppendValue(nil)
		})
		if !errors.Is(err1, ErrCorrupt) || !errors.Is(err2, ErrCorrupt) {
			t.Fatalf("size %d: Object %v, AppendValue %v, want ErrCorrupt", size, err1, err2)
		}
		if n > 1<<20 {
			t.Fatalf("size %d: allocated %d bytes", size, n)
		}
	}
}
