// Package chunker splits a byte stream into blocks for blockfs import.
//
// The default mode is content-defined chunking (FastCDC, Xia et al. 2016 and
// 2020): cut points are chosen where a rolling gear hash of the recent bytes
// has certain bits zero, so they move with the content. Inserting or deleting
// bytes in a large file then changes only the blocks near the edit, and the
// rest still dedup against the previous version. A fixed-size mode is
// provided for callers that want plain offsets.
//
// Cut is the only implementation of the cut-point rule; the streaming
// Chunker just keeps enough data buffered to call it, so both produce
// identical boundaries for the same bytes.
package chunker

// Cut returns the length of the first chunk of data under cfg.
//
// data must either be the rest of the input (so the last chunk is allowed to
// be short) or hold at least cfg.Max bytes; Cut never looks past Max bytes.
// The result is len(data) when data is no longer than Min, or when no cut
// point occurs before Max and len(data) <= Max; it is 0 only for empty data.
// Cut panics if cfg is invalid (see Config.Validate); it does not allocate.
func Cut(data []byte, cfg Config) int {
	p, err := cfg.params()
	if err != nil {
		panic(err)
	}
	return p.cut(data)
}

func (p *params) cut(data []byte) int {
	n := len(data)
	if p.fixed {
		return min(n, p.avg)
	}
	if n <= p.min {
		return n
	}
	n = min(n, p.max)
	normal := min(n, p.avg)
	// The first Min bytes are not hashed at all (FastCDC's cut-point
	// skipping): no cut can fall there, and it saves Min/Avg of the work.
	// The hash starts from zero at Min, so a boundary depends only on the
	// bytes of its own chunk from Min onwards.
	i, h := scan(data[p.min:normal], 0, p.maskS)
	if i >= 0 {
		return p.min + i + 1
	}
	i, _ = scan(data[normal:n], h, p.maskL)
	if i >= 0 {
		return normal + i + 1
	}
	return n
}

// scan feeds d into the gear hash h (h = h<<1 + gear[byte]) and returns the
// index of the first byte after which h&m == 0, or -1 and the final hash.
//
// This is the hot loop. It consumes four bytes per iteration, the 2020
// paper's "roll two bytes" idea taken one step further: with pre-shifted
// tables, the hash after bytes 1..3 of the group equals x+partial sums where
// x = h<<4, shifted left by 3..1; testing those against the mask shifted the
// same way is exact because masks keep clear of the top three bits (maskTop).
// The loop-carried dependency is then only one shift and one add per four
// bytes; the tests hang off it and run in parallel. Byte-at-a-time and this
// loop produce the same boundaries (TestScanMatchesReference).
func scan(d []byte, h, m uint64) (int, uint64) {
	m1, m2, m3 := m<<1, m<<2, m<<3
	i := 0
	for len(d) >= 4 {
		_ = d[3]
		a, b, c, e := gear3[d[0]], gear2[d[1]], gear1[d[2]], gear[d[3]]
		x := h << 4
		ab := a + b
		ce := c + e
		if (x+a)&m3 == 0 {
			return i, 0
		}
		if (x+ab)&m2 == 0 {
			return i + 1, 0
		}
		if (x+ab+c)&m1 == 0 {
			return i + 2, 0
		}
		h = x + (ab + ce)
		if h&m == 0 {
			return i + 3, 0
		}
		d = d[4:]
		i += 4
	}
	for _, v := range d {
		h = h<<1 + gear[v]
		if h&m == 0 {
			return i, 0
		}
		i++
	}
	return -1, h
}
