package objects

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReplay feeds arbitrary bytes to Open as segment data. The first byte
// chooses between a raw file (header included) and records behind a valid
// head header; the rest is split into two segments at a fuzzed point so
// sealed-segment and torn-tail handling are both exercised. Open must never
// panic: it either succeeds (and then every indexed object reads back) or
// returns an error.
func FuzzReplay(f *testing.F) {
	dir := f.TempDir()
	l, _ := Open(dir, Options{SegmentSize: 300})
	l.WriteKeys([][]byte{[]byte("a"), []byte("sa")}, []byte("value-a"))
	l.Write([]byte("b"), []byte("value-b"))
	l.MultiWrite([]Entry{{Keys: [][]byte{[]byte("a")}, Value: []byte("A2")}, {Keys: [][]byte{[]byte("b")}, Delete: true}})
	l.Close()
	for _, p := range segFiles(f, dir) {
		b, _ := os.ReadFile(p)
		f.Add(append([]byte{0, 0}, b...))
		f.Add(append([]byte{1, 0}, b[segHeaderSize:]...))
	}
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		mode, split, data := data[0], int(data[1]), data[2:]
		split = min(split*4, len(data))
		dir := t.TempDir()
		files := [][]byte{data[:split], data[split:]}
		for i, b := range files {
			id := uint32(i + 1)
			if mode&1 == 1 {
				b = append(segHeader{kind: kindHead, id: id, verBase: 1}.encode(), b...)
			}
			if err := os.WriteFile(filepath.Join(dir, segName(id)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, ro := range []bool{true, false} {
			l, err := Open(dir, Options{ReadOnly: ro})
			if err != nil {
				continue
			}
			for slot := 0; slot < 3; slot++ {
				if err := l.Scan(slot, nil, func(o Object) bool {
					if _, err := l.ReadObject(o.Key(0)); err != nil {
						t.Fatalf("indexed object unreadable: %v", err)
					}
					return true
				}); err != nil {
					t.Fatalf("Scan after successful Open: %v", err)
				}
			}
			if !ro {
				if err := l.Write([]byte("new"), []byte("x")); err != nil {
					t.Fatalf("write after open: %v", err)
				}
			}
			l.Close()
		}
	})
}
