package objects

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func openT(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustRead(t testing.TB, l *Log, key string, want string) {
	t.Helper()
	v, err := l.Read([]byte(key))
	if err != nil {
		t.Fatalf("Read(%q): %v", key, err)
	}
	if string(v) != want {
		t.Fatalf("Read(%q) = %q, want %q", key, v, want)
	}
}

func mustMissing(t testing.TB, l *Log, key string) {
	t.Helper()
	if _, err := l.Read([]byte(key)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read(%q) err = %v, want ErrNotFound", key, err)
	}
}

func scanKeys(t testing.TB, l *Log, slot int, prefix string) []string {
	t.Helper()
	var out []string
	err := l.Scan(slot, []byte(prefix), func(o Object) bool {
		out = append(out, string(o.Key(0)))
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

func TestRoundTripReopen(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	for i := 0; i < 100; i++ {
		if err := l.Write([]byte(fmt.Sprintf("k%03d", i)), []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	mustRead(t, l, "k042", "v42")
	mustMissing(t, l, "nope")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Read([]byte("k001")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	l = openT(t, dir, Options{})
	defer l.Close()
	for i := 0; i < 100; i++ {
		mustRead(t, l, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
	}
	o, err := l.ReadObject([]byte("k007"))
	if err != nil || o.Version() == 0 || string(o.Key(0)) != "k007" {
		t.Fatalf("ReadObject: %v %v", o, err)
	}
	if st := l.Stats(); st.Objects != 100 || st.Replayed != 100 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	defer l.Close()
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v", err)
	}
	ro := openT(t, dir, Options{ReadOnly: true})
	defer ro.Close()
	if err := ro.Write([]byte("a"), nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write on ReadOnly: %v", err)
	}
	if _, err := ro.Clean(context.Background(), CleanOptions{}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("clean on ReadOnly: %v", err)
	}
}

func TestInvalid(t *testing.T) {
	l := openT(t, t.TempDir(), Options{})
	defer l.Close()
	for _, keys := range [][][]byte{nil, {nil}, {{}}, make([][]byte, 256)} {
		if err := l.WriteKeys(keys, nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("WriteKeys(%d keys): %v", len(keys), err)
		}
	}
	if err := l.WriteKeys([][]byte{[]byte("a"), make([]byte, 70000)}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("long key: %v", err)
	}
}

func TestMultiKeyAndScan(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentSize: 4096})
	files := []struct{ path, parent, name string }{
		{"/a", "/", "a"}, {"/b", "/", "b"}, {"/a/x", "/a", "x"}, {"/a/y", "/a", "y"},
		{"/a/z", "/a", "z"}, {"/ab", "/", "ab"}, {"/a/x/deep", "/a/x", "deep"},
	}
	for _, f := range files {
		keys := [][]byte{[]byte(f.path), []byte(f.parent + "\x00" + f.name), nil, []byte("tag")}
		if err := l.WriteKeys(keys, []byte("meta:"+f.path)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(l *Log) {
		t.Helper()
		if got := fmt.Sprint(scanKeys(t, l, 1, "/a\x00")); got != "[/a/x /a/y /a/z]" {
			t.Fatalf("scan /a: %s", got)
		}
		if got := fmt.Sprint(scanKeys(t, l, 1, "/\x00")); got != "[/a /ab /b]" {
			t.Fatalf("scan /: %s", got)
		}
		if got := fmt.Sprint(scanKeys(t, l, 0, "/a")); got != "[/a /a/x /a/x/deep /a/y /a/z /ab]" {
			t.Fatalf("scan slot0: %s", got)
		}
		// Several objects share secondary key "tag" in slot 3; empty slot 2
		// keys are not indexed.
		if got := len(scanKeys(t, l, 3, "tag")); got != len(files) {
			t.Fatalf("shared key: %d", got)
		}
		if got := len(scanKeys(t, l, 2, "")); got != 0 {
			t.Fatalf("empty keys indexed: %d", got)
		}
		if got := len(scanKeys(t, l, 9, "")); got != 0 {
			t.Fatalf("unused slot: %d", got)
		}
		var n int
		l.Scan(0, nil, func(Object) bool { n++; return n < 3 })
		if n != 3 {
			t.Fatalf("stop: %d", n)
		}
		o, err := l.ReadObject([]byte("/a/y"))
		if err != nil || o.NumKeys() != 4 || string(o.Key(1)) != "/a\x00y" || len(o.Key(2)) != 0 || string(o.Value()) != "meta:/a/y" {
			t.Fatalf("ReadObject: %v", err)
		}
	}
	check(l)
	l.Close()
	l = openT(t, dir, Options{SegmentSize: 4096})
	defer l.Close()
	check(l)
}

func TestScanLarge(t *testing.T) {
	l := openT(t, t.TempDir(), Options{Sync: SyncNone})
	defer l.Close()
	var batch []Entry
	for i := 0; i < 1000; i++ {
		batch = append(batch, Entry{Keys: [][]byte{[]byte(fmt.Sprintf("/d/%04d", i)), []byte(fmt.Sprintf("/d\x00%04d", i))}})
	}
	if err := l.MultiWrite(batch); err != nil {
		t.Fatal(err)
	}
	keys := scanKeys(t, l, 1, "/d\x00")
	if len(keys) != 1000 {
		t.Fatalf("got %d", len(keys))
	}
	for i, k := range keys {
		if k != fmt.Sprintf("/d/%04d", i) {
			t.Fatalf("order: %d %s", i, k)
		}
	}
}

func TestOverwriteDelete(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	l.WriteKeys([][]byte{[]byte("f"), []byte("old")}, []byte("1"))
	l.WriteKeys([][]byte{[]byte("f"), []byte("new")}, []byte("2"))
	l.Write([]byte("g"), []byte("g1"))
	mustRead(t, l, "f", "2")
	if got := scanKeys(t, l, 1, "old"); len(got) != 0 {
		t.Fatalf("stale secondary key: %v", got)
	}
	if got := scanKeys(t, l, 1, "new"); len(got) != 1 {
		t.Fatalf("new secondary key: %v", got)
	}
	if err := l.Delete([]byte("f")); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete([]byte("never")); err != nil {
		t.Fatal(err)
	}
	mustMissing(t, l, "f")
	if got := scanKeys(t, l, 1, ""); len(got) != 0 {
		t.Fatalf("deleted still scanned: %v", got)
	}
	l.Close()
	l = openT(t, dir, Options{})
	mustMissing(t, l, "f")
	mustRead(t, l, "g", "g1")
	l.Write([]byte("f"), []byte("3"))
	l.Close()
	l = openT(t, dir, Options{})
	defer l.Close()
	mustRead(t, l, "f", "3")
}

func TestMultiWriteAndMultiRead(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{})
	l.Write([]byte("gone"), []byte("x"))
	err := l.MultiWrite([]Entry{
		{Keys: [][]byte{[]byte("a"), []byte("sa")}, Value: []byte("A")},
		{Keys: [][]byte{[]byte("b")}, Value: []byte("B")},
		{Keys: [][]byte{[]byte("gone")}, Delete: true},
		{Keys: [][]byte{[]byte("a"), []byte("sa2")}, Value: []byte("A2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(l *Log) {
		objs, err := l.MultiRead([][]byte{[]byte("b"), []byte("gone"), []byte("a")})
		if err != nil {
			t.Fatal(err)
		}
		if string(objs[0].Value()) != "B" || objs[1].NumKeys() != 0 || string(objs[2].Value()) != "A2" {
			t.Fatalf("MultiRead: %q %d %q", objs[0].Value(), objs[1].NumKeys(), objs[2].Value())
		}
		if got := fmt.Sprint(scanKeys(t, l, 1, "sa")); got != "[a]" {
			t.Fatalf("scan: %s", got)
		}
	}
	check(l)
	l.Close()
	l = openT(t, dir, Options{})
	defer l.Close()
	check(l)
}

func TestConcurrentWritersGroupCommit(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentSize: 64 << 10})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := fmt.Sprintf("g%d-%d", g, i%50)
				if err := l.WriteKeys([][]byte{[]byte(k), []byte("s" + k)}, bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
					t.Error(err)
					return
				}
				if _, err := l.Read([]byte(k)); err != nil {
					t.Error(err)
					return
				}
				if i%7 == 0 {
					l.Delete([]byte(k))
				}
				l.Scan(1, []byte("sg"), func(Object) bool { return true })
			}
		}()
	}
	wg.Wait()
	want := map[string]string{}
	l.Scan(0, nil, func(o Object) bool { want[string(o.Key(0))] = string(o.Value()); return true })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, Options{SegmentSize: 64 << 10})
	defer l.Close()
	got := map[string]string{}
	l.Scan(0, nil, func(o Object) bool { got[string(o.Key(0))] = string(o.Value()); return true })
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) == 0 {
		t.Fatalf("reopen differs: %d vs %d", len(got), len(want))
	}
	if st := l.Stats(); st.Segments < 3 {
		t.Fatalf("expected several segments: %+v", st)
	}
}

func segFiles(t testing.TB, dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	return m
}

var _ = os.Remove

var os_Remove = os.Remove
