package objects

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// rawFrame is a record frame whose length field says n (whatever the
// payload's length), with a CRC that checks out over the header and the
// payload: a frame whose size field lies but is not caught by its checksum.
func rawFrame(typ byte, ver uint64, n uint32, payload []byte) []byte {
	b := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(b[4:], n)
	b[8] = typ
	binary.LittleEndian.PutUint64(b[9:], ver)
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli))
	return b
}

// lyingRecords are record bytes (no segment header) whose size and count
// fields lie: huge record lengths, a batch announcing 2^32-1 records, an
// object announcing 255 keys of 65535 bytes, a tombstone key longer than
// any key, thousands of empty frames. Seeds for the fuzzers of every reader
// of segment bytes: each must be refused (or cut as a torn tail) without
// allocating what the fields claim.
func lyingRecords() [][]byte {
	obj := AppendObject(nil, [][]byte{[]byte("/k")}, []byte("v"))
	good := rawFrame(recObject, 1, uint32(len(obj)), obj)
	u32 := func(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }
	dir := []byte{255}
	for range 255 {
		dir = binary.LittleEndian.AppendUint16(dir, 0xffff)
	}
	var out [][]byte
	for _, n := range []uint32{0xffffffff, maxPayload, maxPayload + 1, 1 << 29} {
		out = append(out, rawFrame(recObject, 1, n, nil), append(slices.Clone(good), rawFrame(recObject, 2, n, obj)...))
	}
	batch := rawFrame(recBatchBegin, 0, 4, u32(0xffffffff))
	batch = append(batch, good...)
	out = append(out, append(batch, rawFrame(recBatchCommit, 0, 4, u32(1))...))
	out = append(out, rawFrame(recObject, 1, uint32(len(dir)+3), append(dir, 'a', 'b', 'c')))
	out = append(out, rawFrame(recTombstone, 1, 4+MaxKeysLen+1, append(u32(1), bytes.Repeat([]byte("k"), MaxKeysLen+1)...)))
	out = append(out, bytes.Repeat(rawFrame(recObject, 1, 0, nil), 300))
	return out
}

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
	for _, r := range lyingRecords() {
		f.Add(append([]byte{1, 0}, r...))
		f.Add(append([]byte{1, 255}, r...))
	}
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
