package objects

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A log that is one big head segment is parsed in parallel pieces
// (parseChunks); damage anywhere must be judged as by one sequential parse.
func TestReplayChunks(t *testing.T) {
	defer func(m int) { chunkMin = m }(chunkMin)
	chunkMin = 64 << 10
	dir := t.TempDir()
	l := openT(t, dir, Options{Sync: SyncNone, SegmentSize: 1 << 30})
	const n = 20_000
	val := make([]byte, 64)
	batch := make([]Entry, 0, 100)
	for i := 0; i < n; i++ {
		batch = append(batch, Entry{Keys: [][]byte{fmt.Appendf(nil, "/d%d/f%d", i%97, i), fmt.Appendf(nil, "/d%d\x00f%d", i%97, i)}, Value: val})
		if i%7 == 3 {
			// single writes and deletes between batches
			if err := l.WriteKeys([][]byte{fmt.Appendf(nil, "/x%d", i)}, val); err != nil {
				t.Fatal(err)
			}
			if err := l.MultiWrite([]Entry{{Keys: [][]byte{fmt.Appendf(nil, "/x%d", i-7)}, Delete: true}}); err != nil {
				t.Fatal(err)
			}
		}
		if len(batch) == cap(batch) {
			if err := l.MultiWrite(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	want := fullState(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, segName(1))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 3*chunkMin {
		t.Fatalf("segment only %d bytes", len(data))
	}
	check := func(name string, ro bool, wantErr bool) {
		t.Helper()
		l, err := Open(dir, Options{ReadOnly: ro})
		if wantErr {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: got %v, want ErrCorrupt", name, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer l.Close()
		if got := fullState(t, l); got != want {
			t.Fatalf("%s: state differs", name)
		}
	}
	check("clean", true, false)
	ingest := func(name string, b []byte, wantErr bool) {
		t.Helper()
		dst := openT(t, t.TempDir(), Options{Sync: SyncNone})
		defer dst.Close()
		_, err := dst.Ingest(b)
		if wantErr {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ingest %s: got %v, want ErrCorrupt", name, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ingest %s: %v", name, err)
		}
		if got := fullState(t, dst); got != want {
			t.Fatalf("ingest %s: state differs", name)
		}
	}
	ingest("clean", data, false)
	// Torn tail: a partial record after the last one.
	torn := append(append([]byte(nil), data...), data[segHeaderSize:segHeaderSize+30]...)
	ingest("torn", torn, true)
	os.WriteFile(path, torn, 0o644)
	check("torn ro", true, false)
	check("torn", false, false)
	// Damage in the middle, in every piece.
	for _, at := range []int{len(data) / 4, len(data) / 2, len(data) * 3 / 4} {
		bad := append([]byte(nil), data...)
		bad[at] ^= 0x55
		ingest(fmt.Sprint("damage at ", at), bad, true)
		os.WriteFile(path, bad, 0o644)
		check(fmt.Sprint("damage at ", at), true, true)
	}
	os.WriteFile(path, data, 0o644)
	check("restored", false, false)
}
