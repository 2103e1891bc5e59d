package chunker

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzChunker checks the chunk contract for arbitrary bytes and small
// configs: no panic, bounds respected, concatenation equals the input, and
// the streaming Chunker agrees with Cut.
func FuzzChunker(f *testing.F) {
	f.Add([]byte("hello, blockfs"), uint16(1), uint8(6), uint16(0), false, false)
	f.Add(bytes.Repeat([]byte{0}, 5000), uint16(64), uint8(8), uint16(1024), false, true)
	f.Fuzz(func(t *testing.T, data []byte, minSize uint16, avgShift uint8, maxSize uint16, fixed, oneByte bool) {
		cfg := Config{Min: int(minSize), Avg: 1 << (6 + avgShift%6), Max: int(maxSize), Fixed: fixed}
		if cfg.Validate() != nil {
			return
		}
		var r io.Reader = bytes.NewReader(data)
		if oneByte {
			r = iotest.OneByteReader(r)
		} else {
			r = iotest.HalfReader(r)
		}
		chunks := chunkAll(t, r, cfg)
		checkChunks(t, data, chunks, cfg)
		want := cutAll(data, cfg)
		if len(want) != len(chunks) {
			t.Fatalf("%d chunks via Next, %d via Cut", len(chunks), len(want))
		}
		for i, c := range chunks {
			if len(c) != want[i] || want[i] != refCut(data, cfg) {
				t.Fatalf("chunk %d: Next %d, Cut %d, reference %d", i, len(c), want[i], refCut(data, cfg))
			}
			data = data[want[i]:]
		}
	})
}
