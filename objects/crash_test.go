package objects

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// history records, after each committed operation, the file size of the
// newest segment and the expected key->value state.
type snapshot struct {
	size  int64
	state map[string]string
}

func copyState(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func dumpState(t *testing.T, l *Log) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := l.Scan(0, nil, func(o Object) bool {
		m[string(o.Key(0))] = string(o.Value())
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	// Secondary index agrees with primary.
	n, want := 0, 0
	l.Scan(0, nil, func(o Object) bool {
		if len(o.Key(1)) > 0 {
			want++
		}
		return true
	})
	l.Scan(1, nil, func(o Object) bool { n++; return true })
	if n != want {
		t.Fatalf("slot 1 has %d objects, want %d", n, want)
	}
	return m
}

func lastSeg(t *testing.T, dir string) string {
	files := segFiles(t, dir)
	sort.Strings(files)
	return files[len(files)-1]
}

// buildHistory writes a log whose last segment ends with a mix of single
// writes, overwrites, deletes and multi-writes, and returns the snapshots
// taken after each operation in the last segment.
func buildHistory(t *testing.T, dir string, r *rand.Rand, ops int) []snapshot {
	l := openT(t, dir, Options{SegmentSize: 8 << 10})
	state := map[string]string{}
	put := func(k, v string) {
		if err := l.WriteKeys([][]byte{[]byte(k), []byte("s" + k)}, []byte(v)); err != nil {
			t.Fatal(err)
		}
		state[k] = v
	}
	for i := 0; i < 60; i++ { // earlier segments
		put(fmt.Sprintf("k%02d", r.Intn(30)), fmt.Sprintf("v%d-%s", i, string(make([]byte, r.Intn(200)))))
	}
	l.Sync()
	// Force a fresh segment so the history below is all in the last one.
	l.Close()
	l = openT(t, dir, Options{SegmentSize: 1})
	var snaps []snapshot
	snap := func() {
		snaps = append(snaps, snapshot{size: fileSize(t, lastSeg(t, dir)), state: copyState(state)})
	}
	put("first", "x") // rolls to a new segment
	l.Close()
	l = openT(t, dir, Options{SegmentSize: 1 << 20})
	snap()
	for i := 0; i < ops; i++ {
		k := fmt.Sprintf("k%02d", r.Intn(30))
		switch r.Intn(4) {
		case 0, 1:
			put(k, fmt.Sprintf("w%d", i))
		case 2:
			if err := l.Delete([]byte(k)); err != nil {
				t.Fatal(err)
			}
			delete(state, k)
		case 3:
			k2 := fmt.Sprintf("k%02d", r.Intn(30))
			err := l.MultiWrite([]Entry{
				{Keys: [][]byte{[]byte(k), []byte("s" + k)}, Value: []byte(fmt.Sprintf("m%d", i))},
				{Keys: [][]byte{[]byte(k2)}, Delete: true},
				{Keys: [][]byte{[]byte("b" + k), []byte("sb" + k)}, Value: []byte("batch")},
			})
			if err != nil {
				t.Fatal(err)
			}
			state[k] = fmt.Sprintf("m%d", i)
			delete(state, k2)
			state["b"+k] = "batch"
		}
		snap()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return snaps
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func copyDir(t *testing.T, src, dst string) {
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// expectedAt returns the state committed when the last segment is cut to n
// bytes: the last snapshot whose size fits.
func expectedAt(snaps []snapshot, n int64) map[string]string {
	var best map[string]string
	for _, s := range snaps {
		if s.size <= n {
			best = s.state
		}
	}
	return best
}

func TestCrashTruncateEveryOffset(t *testing.T) {
	ops := 25
	if testing.Short() {
		ops = 8
	}
	src := t.TempDir()
	snaps := buildHistory(t, src, rand.New(rand.NewSource(2)), ops)
	last := filepath.Base(lastSeg(t, src))
	full := snaps[len(snaps)-1].size
	for n := snaps[0].size; n <= full; n++ {
		dir := t.TempDir()
		copyDir(t, src, dir)
		if err := os.Truncate(filepath.Join(dir, last), n); err != nil {
			t.Fatal(err)
		}
		// ReadOnly first: must not modify anything, must see the same prefix.
		ro := openT(t, dir, Options{ReadOnly: true})
		want := fmt.Sprint(expectedAt(snaps, n))
		if got := fmt.Sprint(dumpState(t, ro)); got != want {
			t.Fatalf("ReadOnly, truncated at %d:\n got %s\nwant %s", n, got, want)
		}
		ro.Close()
		if fileSize(t, filepath.Join(dir, last)) != n {
			t.Fatal("ReadOnly open changed the file")
		}
		l := openT(t, dir, Options{})
		if got := fmt.Sprint(dumpState(t, l)); got != want {
			t.Fatalf("truncated at %d:\n got %s\nwant %s", n, got, want)
		}
		// The torn tail is gone and the log is writable again.
		if err := l.Write([]byte("after"), []byte("crash")); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = openT(t, dir, Options{})
		mustRead(t, l, "after", "crash")
		l.Close()
	}
}

func TestCrashCorruptEveryByteOfTail(t *testing.T) {
	ops := 6
	src := t.TempDir()
	snaps := buildHistory(t, src, rand.New(rand.NewSource(3)), ops)
	last := filepath.Base(lastSeg(t, src))
	full := snaps[len(snaps)-1].size
	orig, _ := os.ReadFile(filepath.Join(src, last))
	step := int64(1)
	if testing.Short() {
		step = 7
	}
	for off := snaps[0].size; off < full; off += step {
		dir := t.TempDir()
		copyDir(t, src, dir)
		b := append([]byte(nil), orig...)
		b[off] ^= 0x5a
		os.WriteFile(filepath.Join(dir, last), b, 0o644)
		l, err := Open(dir, Options{})
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Offset > off || ce.Segment != filepath.Join(dir, last) {
				t.Fatalf("corrupt at %d: want *CorruptError at or before it, got %v", off, err)
			}
			continue
		}
		// Accepted as a torn tail: the state must be a committed prefix
		// that ends before the damaged byte.
		got := fmt.Sprint(dumpState(t, l))
		if want := fmt.Sprint(expectedAt(snaps, off)); got != want {
			t.Fatalf("corrupt at %d accepted with wrong state:\n got %s\nwant %s", off, got, want)
		}
		l.Close()
	}
}

func TestCorruptSealedSegment(t *testing.T) {
	src := t.TempDir()
	buildHistory(t, src, rand.New(rand.NewSource(4)), 3)
	files := segFiles(t, src)
	sort.Strings(files)
	r := rand.New(rand.NewSource(5))
	for i := 0; i < 40; i++ {
		victim := filepath.Base(files[r.Intn(len(files)-1)])
		dir := t.TempDir()
		copyDir(t, src, dir)
		b, _ := os.ReadFile(filepath.Join(dir, victim))
		off := r.Intn(len(b))
		b[off] ^= byte(1 + r.Intn(255))
		os.WriteFile(filepath.Join(dir, victim), b, 0o644)
		for _, ro := range []bool{true, false} {
			_, err := Open(dir, Options{ReadOnly: ro})
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d of sealed %s damaged: Open = %v, want *CorruptError", off, victim, err)
			}
			if ce.Segment != filepath.Join(dir, victim) || ce.Offset > int64(off) {
				t.Fatalf("damage at %s:%d reported as %v", victim, off, ce)
			}
		}
	}
	// A sealed segment cut short is corruption too.
	dir := t.TempDir()
	copyDir(t, src, dir)
	p := filepath.Join(dir, filepath.Base(files[0]))
	os.Truncate(p, fileSize(t, p)-3)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated sealed segment: %v", err)
	}
}
