package chunker

import (
	"bytes"
	"crypto/sha256"
	"io"
	"sync"
	"testing"
)

// benchSize is the benchmark input: large enough to defeat caches.
const benchSize = 256 << 20

var benchData = sync.OnceValue(func() []byte { return randBytes(benchSize, 99) })

// BenchmarkChunker measures streaming chunking (Next over a bytes.Reader,
// including the buffer refill copies) with the default config.
func BenchmarkChunker(b *testing.B) {
	data := benchData()
	r := bytes.NewReader(data)
	c, _ := New(r, Config{})
	c.Next() // grow the buffer to its steady size outside the timing
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		r.Reset(data)
		c.Reset(r)
		for {
			if _, err := c.Next(); err == io.EOF {
				break
			}
		}
	}
}

// BenchmarkCut measures the pure cut loop over an in-memory buffer.
func BenchmarkCut(b *testing.B) {
	data := benchData()
	cfg := Config{}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		for d := data; len(d) > 0; {
			d = d[Cut(d, cfg):]
		}
	}
}

// BenchmarkSHA256 is the baseline: every chunk is hashed anyway, so
// chunking should cost well under the hashing.
func BenchmarkSHA256(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		sha256.Sum256(data)
	}
}
