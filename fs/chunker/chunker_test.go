package chunker

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"
)

// small is a test config with the default 1:4:16 ratios scaled down.
var small = Config{Min: 64, Avg: 256, Max: 1024}

// randBytes returns n deterministic pseudo-random bytes. ChaCha8 is a
// specified algorithm, so the golden test's input never changes.
func randBytes(n int, seed uint64) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// refCut is the FastCDC rule written the obvious way, one byte at a time.
func refCut(data []byte, cfg Config) int {
	p, err := cfg.params()
	if err != nil {
		panic(err)
	}
	n := len(data)
	if p.fixed {
		return min(n, p.avg)
	}
	if n <= p.min {
		return n
	}
	n = min(n, p.max)
	var h uint64
	for i := p.min; i < n; i++ {
		h = h<<1 + gear[data[i]]
		m := p.maskL
		if i < p.avg {
			m = p.maskS
		}
		if h&m == 0 {
			return i + 1
		}
	}
	return n
}

// cutAll splits data with Cut.
func cutAll(data []byte, cfg Config) []int {
	var lens []int
	for len(data) > 0 {
		n := Cut(data, cfg)
		lens = append(lens, n)
		data = data[n:]
	}
	return lens
}

// chunkAll splits r with a Chunker, copying the chunks.
func chunkAll(t testing.TB, r io.Reader, cfg Config) [][]byte {
	t.Helper()
	c, err := New(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		b, err := c.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(b))
	}
}

// checkChunks asserts the chunk contract: bounds and exact concatenation.
func checkChunks(t testing.TB, in []byte, chunks [][]byte, cfg Config) {
	t.Helper()
	p, _ := cfg.params()
	var cat []byte
	for i, c := range chunks {
		last := i == len(chunks)-1
		switch {
		case len(c) == 0 || len(c) > p.max:
			t.Fatalf("chunk %d: length %d outside [1,%d]", i, len(c), p.max)
		case !last && len(c) < p.min:
			t.Fatalf("chunk %d of %d: length %d below Min %d", i, len(chunks), len(c), p.min)
		}
		cat = append(cat, c...)
	}
	if !bytes.Equal(cat, in) {
		t.Fatalf("chunks (%d, total %d bytes) do not concatenate to the input (%d bytes)", len(chunks), len(cat), len(in))
	}
}

func TestValidate(t *testing.T) {
	good := []Config{{}, DefaultConfig(), small, {Avg: 64}, {Min: 1, Avg: 64, Max: 64},
		{Avg: 16 << 20}, {Max: 64 << 20}, {Fixed: true}, {Fixed: true, Avg: 1000}}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: unexpected error %v", c, err)
		}
	}
	bad := []Config{{Avg: 1000}, {Avg: 32}, {Min: 2 << 20}, {Max: 512 << 10},
		{Max: 128 << 20}, {Avg: 64 << 20, Max: 128 << 20}, {Min: -1}, {Avg: -4},
		{Fixed: true, Avg: 65 << 20}, {Fixed: true, Avg: -1}}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: expected an error", c)
		}
		if _, err := New(bytes.NewReader(nil), c); err == nil {
			t.Errorf("New(%+v): expected an error", c)
		}
	}
	if d := DefaultConfig(); d != (Config{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}) {
		t.Errorf("DefaultConfig() = %+v", d)
	}
}

func TestScanMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := randBytes(1<<20, 7)
	for range 2000 {
		bitsN := 1 + rng.IntN(28)
		m := mask(bitsN)
		off := rng.IntN(len(data))
		d := data[off:min(len(data), off+rng.IntN(1<<(bitsN/2+4)))]
		h0 := rng.Uint64()
		want, wantH := -1, h0
		for i, v := range d {
			wantH = wantH<<1 + gear[v]
			if wantH&m == 0 {
				want = i
				break
			}
		}
		got, gotH := scan(d, h0, m)
		if got != want || (want < 0 && gotH != wantH) {
			t.Fatalf("scan(len %d, bits %d) = %d,%x; want %d,%x", len(d), bitsN, got, gotH, want, wantH)
		}
	}
}

func TestCutMatchesReference(t *testing.T) {
	data := randBytes(8<<20, 3)
	for _, cfg := range []Config{small, {Min: 100, Avg: 512, Max: 777}, {Avg: 64 << 10}, {}} {
		for d := data; len(d) > 0; {
			n, want := Cut(d, cfg), refCut(d, cfg)
			if n != want {
				t.Fatalf("%+v: Cut = %d, reference = %d", cfg, n, want)
			}
			d = d[n:]
		}
	}
}

// shortReader returns at most a random number of bytes per Read, sometimes
// none, sometimes together with io.EOF.
type shortReader struct {
	r   *bytes.Reader
	rng *rand.Rand
}

func (s *shortReader) Read(p []byte) (int, error) {
	if s.rng.IntN(8) == 0 {
		return 0, nil
	}
	n, err := s.r.Read(p[:min(len(p), 1+s.rng.IntN(3000))])
	if err == nil && s.r.Len() == 0 && s.rng.IntN(2) == 0 {
		err = io.EOF
	}
	return n, err
}

func TestProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	readers := map[string]func([]byte) io.Reader{
		"plain":   func(b []byte) io.Reader { return bytes.NewReader(b) },
		"onebyte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":    func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"dataerr": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
		"short": func(b []byte) io.Reader {
			return &shortReader{bytes.NewReader(b), rand.New(rand.NewPCG(uint64(len(b)), 9))}
		},
	}
	cfgs := []Config{small, {Min: 1, Avg: 64, Max: 100}, {Min: 200, Avg: 256, Max: 300},
		{Fixed: true, Avg: 100}, {Fixed: true, Avg: 1}}
	for iter := range 60 {
		n := rng.IntN(20000)
		if iter%10 == 0 {
			n = rng.IntN(3)
		}
		in := randBytes(n, uint64(iter))
		if iter%3 == 0 { // low-entropy input: long runs of one byte
			for i := range in {
				in[i] = in[i] & 1
			}
		}
		for _, cfg := range cfgs {
			want := cutAll(in, cfg)
			for name, mk := range readers {
				chunks := chunkAll(t, mk(in), cfg)
				checkChunks(t, in, chunks, cfg)
				if len(chunks) != len(want) {
					t.Fatalf("%s %+v: %d chunks via Next, %d via Cut", name, cfg, len(chunks), len(want))
				}
				for i, c := range chunks {
					if len(c) != want[i] {
						t.Fatalf("%s %+v: chunk %d is %d bytes via Next, %d via Cut", name, cfg, i, len(c), want[i])
					}
				}
			}
		}
	}
}

func TestEmpty(t *testing.T) {
	c, err := New(bytes.NewReader(nil), Config{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if b, err := c.Next(); err != io.EOF || b != nil {
			t.Fatalf("Next on empty input = %v, %v", b, err)
		}
	}
	if n := Cut(nil, Config{}); n != 0 {
		t.Fatalf("Cut(nil) = %d", n)
	}
}

func TestFixed(t *testing.T) {
	in := randBytes(10*1000+7, 1)
	chunks := chunkAll(t, iotest.HalfReader(bytes.NewReader(in)), Config{Fixed: true, Avg: 1000})
	if len(chunks) != 11 || len(chunks[10]) != 7 {
		t.Fatalf("got %d chunks, last %d bytes", len(chunks), len(chunks[len(chunks)-1]))
	}
	checkChunks(t, in, chunks, Config{Fixed: true, Avg: 1000})
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	in := randBytes(10000, 5)
	r := io.MultiReader(bytes.NewReader(in), iotest.ErrReader(boom))
	c, _ := New(r, small)
	var got []byte
	for {
		b, err := c.Next()
		if err != nil {
			if err != boom {
				t.Fatalf("err = %v, want boom", err)
			}
			break
		}
		got = append(got, b...)
	}
	// Every chunk whose end the data before the error fixes is delivered,
	// that is all but the last one the whole input gives.
	lens := cutAll(in, small)
	if !bytes.HasPrefix(in, got) || len(got) != len(in)-lens[len(lens)-1] {
		t.Fatalf("delivered %d of %d bytes before the error", len(got), len(in))
	}
	if _, err := c.Next(); err != boom {
		t.Fatalf("error not sticky: %v", err)
	}
}

func TestNoProgress(t *testing.T) {
	c, _ := New(iotest.TimeoutReader(bytes.NewReader(nil)), small)
	c.r = readerFunc(func([]byte) (int, error) { return 0, nil })
	if _, err := c.Next(); err != io.ErrNoProgress {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestGolden pins boundaries of a fixed input. If it fails, the gear table,
// masks or cut rule changed: every block hash in every existing store would
// change too. Do not update the numbers unless that is intended.
func TestGolden(t *testing.T) {
	in := randBytes(24<<20, 42)
	for _, tc := range []struct {
		cfg  Config
		want []int
	}{
		{Config{}, []int{1204910, 2301144, 3366252, 5120729, 6658655, 7308188, 8678363, 9900720}},
		{small, []int{281, 631, 897, 1255, 1865, 2243, 2533, 2865}},
	} {
		got := cutAll(in, tc.cfg)[:8]
		off, offs := 0, make([]int, len(got))
		for i, n := range got {
			off += n
			offs[i] = off
		}
		if !slices.Equal(offs, tc.want) {
			t.Errorf("%+v: boundaries %#v, want %#v", tc.cfg, offs, tc.want)
		}
	}
}

// sharedFraction returns the fraction of b's chunks (by hash) also in a.
func sharedFraction(t *testing.T, a, b []byte, cfg Config) (float64, int) {
	seen := map[[32]byte]bool{}
	for _, c := range chunkAll(t, bytes.NewReader(a), cfg) {
		seen[sha256.Sum256(c)] = true
	}
	chunks := chunkAll(t, bytes.NewReader(b), cfg)
	shared := 0
	for _, c := range chunks {
		if seen[sha256.Sum256(c)] {
			shared++
		}
	}
	return float64(shared) / float64(len(chunks)), len(chunks)
}

func TestStability(t *testing.T) {
	orig := randBytes(32<<20, 11)
	mid := len(orig) / 2
	edits := map[string][]byte{
		"insert":    append(append(bytes.Clone(orig[:mid]), "hello, blockfs"...), orig[mid:]...),
		"delete":    append(bytes.Clone(orig[:mid]), orig[mid+7:]...),
		"overwrite": append(append(bytes.Clone(orig[:mid]), 1, 2, 3), orig[mid+3:]...),
		"prepend":   append([]byte{0xff}, orig...),
	}
	for _, cfg := range []Config{{}, {Avg: 64 << 10}} {
		for name, edited := range edits {
			frac, n := sharedFraction(t, orig, edited, cfg)
			t.Logf("%+v %s: %.1f%% of %d chunks shared", cfg, name, 100*frac, n)
			if frac < 0.9 {
				t.Errorf("%+v %s: only %.1f%% of %d chunks shared", cfg, name, 100*frac, n)
			}
		}
	}
}

func TestAverage(t *testing.T) {
	in := randBytes(64<<20, 13)
	for _, cfg := range []Config{{}, {Avg: 64 << 10}, small} {
		p, _ := cfg.params()
		lens := cutAll(in, cfg)
		mean := float64(len(in)) / float64(len(lens))
		t.Logf("%+v: %d chunks, mean %.0f (%.2f x Avg)", cfg, len(lens), mean, mean/float64(p.avg))
		if mean < 0.75*float64(p.avg) || mean > 1.25*float64(p.avg) {
			t.Errorf("%+v: mean chunk %.0f not within 25%% of %d", cfg, mean, p.avg)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	in := randBytes(16<<20, 17)
	r := bytes.NewReader(in)
	c, _ := New(r, Config{})
	c.Next() // warm up: the buffer grows to its final size
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := c.Next(); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Next allocates %.1f times per call", allocs)
	}
}
