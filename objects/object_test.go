package objects

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"testing"
)

func randKeys(r *rand.Rand, n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		k := make([]byte, r.Intn(20))
		if i == 0 {
			k = append(k, 'p')
		}
		r.Read(k)
		keys[i] = k
	}
	return keys
}

func TestObjectRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for iter := 0; iter < 500; iter++ {
		keys := randKeys(r, 1+r.Intn(60))
		val := make([]byte, r.Intn(300))
		r.Read(val)
		prefix := []byte("prefix")
		enc := AppendObject(append([]byte(nil), prefix...), keys, val)
		if len(enc) != len(prefix)+EncodedLen(keys, val) {
			t.Fatalf("EncodedLen mismatch")
		}
		o, err := ParseObject(enc[len(prefix):])
		if err != nil {
			t.Fatal(err)
		}
		if o.NumKeys() != len(keys) {
			t.Fatalf("NumKeys %d want %d", o.NumKeys(), len(keys))
		}
		for i, k := range keys {
			if !bytes.Equal(o.Key(i), k) {
				t.Fatalf("key %d: %q want %q", i, o.Key(i), k)
			}
		}
		if o.Key(len(keys)) != nil || o.Key(-1) != nil {
			t.Fatal("out of range key not nil")
		}
		if !bytes.Equal(o.Value(), val) {
			t.Fatal("value mismatch")
		}
		// Non-contiguous: every split point, and a ReaderAt.
		obj := enc[len(prefix):]
		for split := 0; split <= len(obj); split += 1 + len(obj)/17 {
			a := append([]byte(nil), obj[:split]...)
			b := append([]byte(nil), obj[split:]...)
			checkReader(t, NewObjectReaderPieces(a, b), keys, val)
		}
		checkReader(t, NewObjectReader(bytes.NewReader(enc), int64(len(prefix)), int64(len(obj))), keys, val)
	}
}

func checkReader(t *testing.T, or *ObjectReader, keys [][]byte, val []byte) {
	t.Helper()
	n, err := or.NumKeys()
	if err != nil || n != len(keys) {
		t.Fatalf("NumKeys %d %v", n, err)
	}
	for pass := 0; pass < 2; pass++ {
		for i, k := range keys {
			got, err := or.Key(i, nil)
			if err != nil || !bytes.Equal(got, k) {
				t.Fatalf("reader key %d: %q %v want %q", i, got, err, k)
			}
			if l, _ := or.KeyLen(i); l != len(k) {
				t.Fatalf("KeyLen")
			}
		}
	}
	if _, err := or.Key(len(keys), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("out of range: %v", err)
	}
	v, err := or.AppendValue(nil)
	if err != nil || !bytes.Equal(v, val) {
		t.Fatalf("reader value %v", err)
	}
	o, err := or.Object()
	if err != nil || !bytes.Equal(o.Value(), val) {
		t.Fatalf("reader Object %v", err)
	}
}

func TestParseObjectGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {0, 0, 0}, {1, 5, 0}, {2, 3, 0, 1, 0, 'a', 'b', 'c'}, {1, 0}} {
		if _, err := ParseObject(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseObject(%v) = %v, want ErrCorrupt", b, err)
		}
		or := NewObjectReaderPieces(b, nil)
		if _, err := or.Key(1, nil); err == nil {
			t.Errorf("reader accepted %v", b)
		}
	}
	var z Object
	if z.NumKeys() != 0 || z.Key(0) != nil || z.Value() != nil {
		t.Fatal("zero Object not empty")
	}
}

func TestEncodeNoExtraAllocs(t *testing.T) {
	keys := [][]byte{[]byte("primary"), []byte("dir\x00name")}
	val := make([]byte, 4096)
	dst := make([]byte, 0, 8192)
	if a := testing.AllocsPerRun(100, func() { AppendObject(dst[:0], keys, val) }); a != 0 {
		t.Fatalf("AppendObject into big enough dst allocates %v", a)
	}
	enc := AppendObject(nil, keys, val)
	if a := testing.AllocsPerRun(100, func() {
		o, _ := ParseObject(enc)
		_ = o.Key(1)
	}); a != 0 {
		t.Fatalf("ParseObject allocates %v", a)
	}
}

func FuzzParseObject(f *testing.F) {
	f.Add(AppendObject(nil, [][]byte{[]byte("k")}, []byte("v")))
	f.Add(AppendObject(nil, [][]byte{[]byte("k"), nil, []byte("s2")}, nil))
	f.Add([]byte{0})
	f.Add([]byte{3, 1, 0, 0, 0, 2, 0, 'a', 'b'})
	// Lying directories: 255 keys of 65535 bytes each in a tiny object;
	// cumulative lengths that shrink; a last length past the end.
	lie := []byte{255}
	for range 255 {
		lie = binary.LittleEndian.AppendUint16(lie, 0xffff)
	}
	f.Add(append(lie, 'a'))
	f.Add([]byte{2, 5, 0, 1, 0, 'a', 'b', 'c', 'd', 'e'})
	f.Add([]byte{1, 0xff, 0xff, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseObject(b)
		split := len(b) / 2
		or := NewObjectReaderPieces(b[:split], b[split:])
		n, rerr := or.NumKeys()
		if err != nil {
			// The reader validates lazily, but must not panic either.
			for i := 0; i < n; i++ {
				or.Key(i, nil)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("reader rejects valid object: %v", rerr)
		}
		if n != o.NumKeys() {
			t.Fatal("key count differs")
		}
		keys := make([][]byte, o.NumKeys())
		for i := range keys {
			keys[i] = o.Key(i)
			rk, err := or.Key(i, nil)
			if err != nil || !bytes.Equal(rk, keys[i]) {
				t.Fatal("reader key differs")
			}
		}
		// Re-encoding reproduces the input exactly.
		if !bytes.Equal(AppendObject(nil, keys, o.Value()), b) {
			t.Fatal("re-encode differs")
		}
	})
}

// --- benchmarks mirroring the RAMCloud measurements ---

var sinkBytes []byte

func BenchmarkGetKeyContiguous(b *testing.B) {
	enc := AppendObject(nil, [][]byte{[]byte("0123456789abcdef0123456789")}, make([]byte, 100))
	o, _ := ParseObject(enc)
	for b.Loop() {
		sinkBytes = o.Key(0)
	}
}

func fiftyKeyObject() []byte {
	keys := make([][]byte, 51)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key-%02d-abcdefghij", i))
	}
	return AppendObject(nil, keys, make([]byte, 1000))
}

// The object is split in two pieces in the middle of its keys, like a
// RAMCloud Buffer with two chunks. "First" measures a fresh reader (cache
// fill + key), "Second" a reader whose key cache is warm.
func BenchmarkGetKey50NonContiguousFirst(b *testing.B) {
	enc := fiftyKeyObject()
	a, c := enc[:400], enc[400:]
	var r ObjectReader
	var buf [64]byte
	for b.Loop() {
		r.ResetPieces(a, c)
		sinkBytes, _ = r.Key(30, buf[:0])
	}
}

func BenchmarkGetKey50NonContiguousSecond(b *testing.B) {
	enc := fiftyKeyObject()
	r := NewObjectReaderPieces(enc[:400], enc[400:])
	var buf [64]byte
	r.Key(30, buf[:0])
	for b.Loop() {
		sinkBytes, _ = r.Key(30, buf[:0])
	}
}

func BenchmarkEncode4K(b *testing.B) {
	keys := [][]byte{[]byte("/some/dir/file.txt"), []byte("/some/dir\x00file.txt")}
	val := make([]byte, 4096)
	dst := make([]byte, 0, 8192)
	b.ReportAllocs()
	b.SetBytes(int64(len(val)))
	for b.Loop() {
		dst = AppendObject(dst[:0], keys, val)
	}
}

func BenchmarkDecode(b *testing.B) {
	enc := AppendObject(nil, [][]byte{[]byte("/some/dir/file.txt"), []byte("/some/dir\x00file.txt")}, make([]byte, 4096))
	b.ReportAllocs()
	for b.Loop() {
		o, _ := ParseObject(enc)
		sinkBytes = o.Key(1)
	}
}
