//go:build amd64 && !purego

package blockstore

//go:generate sh -c "go run ./internal/sumgen > sum2_amd64.s"

// blocks2 runs the SHA-256 block function over n 64-byte blocks of two
// messages at once: h[0:8] is a's state, h[8:16] b's, both in the
// standard word order. a and b may be the same.
//
//go:noescape
func blocks2(h *[16]uint32, a, b *byte, n int)

func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// haveSum2 says whether this CPU has the SHA extensions (and the SSSE3 and
// SSE4.1 shuffles the block function uses).
var haveSum2 = func() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, c1, _ := cpuid(1, 0)
	_, b7, _, _ := cpuid(7, 0)
	const ssse3, sse41, sha = 1 << 9, 1 << 19, 1 << 29
	return c1&ssse3 != 0 && c1&sse41 != 0 && b7&sha != 0
}()
