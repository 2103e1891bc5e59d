//go:build !amd64 || purego

package blockstore

// Without the SHA extensions' assembly, Sum hashes one block per call.
var haveSum2 = false

func blocks2(h *[16]uint32, a, b *byte, n int) { panic("blockstore: blocks2 without assembly") }
