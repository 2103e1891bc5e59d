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
	n, _ := p.cut(data)
	return n
}

// cut implements Cut. found reports that the chunk ends at a content-defined
// cut point (or a full fixed-size block), which more data could not move.
func (p *params) cut(data []byte) (n int, found bool) {
	n = len(data)
	if p.fixed {
		return min(n, p.avg), n >= p.avg
	}
	if n <= p.min {
		return n, false
	}
	n = min(n, p.max)
	normal := min(n, p.avg)
	// The first Min bytes are not hashed at all (FastCDC's cut-point
	// skipping): no cut can fall there, and it saves Min/Avg of the work.
	// The hash starts from zero at Min, so a boundary depends only on the
	// bytes of its own chunk from Min onwards.
	i, h := scan(data[p.min:normal], 0, p.maskS)
	if i >= 0 {
		return p.min + i + 1, true
	}
	i, _ = scan(data[normal:n], h, p.maskL)
	if i >= 0 {
		return normal + i + 1, true
	}
	return n, n == p.max
}

// scan feeds d into the gear hash h (h = h<<1 + gear[byte]) and returns the
// index of the first byte after which h&m == 0, or -1 and the final hash.
//
// This is the hot loop, written as in the FastCDC 2020 paper: two bytes per
// step with one shift, h = h<<2 + gear1[b0] (gear1 = gear<<1), which is the
// one-byte hash after b0 shifted left by one, so it is tested against m<<1
// (exact because masks stay below the top bit, see maskTop); then adding
// gear[b1] gives the ordinary hash after b1. The step is unrolled twice and
// indexed as d[i+k] with i < len(d)-3, a form the compiler's prove pass
// recognises, so the loop carries no bounds checks. Other shapes measured
// slower here: tables behind a pointer (nil checks), advancing d = d[4:]
// (pointer masking), and breaking the dependency chain with partial sums
// (more instructions; the chain is not the bottleneck). Byte-at-a-time and
// this loop give the same boundaries (TestScanMatchesReference).
func scan(d []byte, h, m uint64) (int, uint64) {
	m1 := m << 1
	i := 0
	for ; i < len(d)-3; i += 4 {
		h = h<<2 + gear1[d[i]]
		if h&m1 == 0 {
			return i, 0
		}
		h += gear[d[i+1]]
		if h&m == 0 {
			return i + 1, 0
		}
		h = h<<2 + gear1[d[i+2]]
		if h&m1 == 0 {
			return i + 2, 0
		}
		h += gear[d[i+3]]
		if h&m == 0 {
			return i + 3, 0
		}
	}
	for ; i < len(d); i++ {
		h = h<<1 + gear[d[i]]
		if h&m == 0 {
			return i, 0
		}
	}
	return -1, h
}
