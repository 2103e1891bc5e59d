package gc

import (
	"context"
	"fmt"
	"slices"

	"blockfs/blockstore"
)

// The condemned set is stored as blocks: the sorted 32-byte hashes,
// concatenated and cut into chunks. Blocks are verified on read like any
// metadata, so a damaged set is an error, never a different set.

const setChunk = 4 << 20 // a multiple of the hash size

// hashSet is a sorted list of hashes, searched by binary search (a map
// of millions of hashes costs several times the memory).
type hashSet []blockstore.Hash

func (s hashSet) has(h blockstore.Hash) bool {
	_, ok := slices.BinarySearchFunc(s, h, cmpHash)
	return ok
}

func cmpHash(a, b blockstore.Hash) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// writeSet stores the sorted set as blocks and returns their locators.
func writeSet(ctx context.Context, st blockstore.Store, set hashSet) ([]blockstore.Locator, error) {
	data := make([]byte, 0, len(set)*len(blockstore.Hash{}))
	for _, h := range set {
		data = append(data, h[:]...)
	}
	locs := []blockstore.Locator{}
	for len(data) > 0 {
		n := min(len(data), setChunk)
		l := blockstore.LocatorOf(data[:n])
		if err := st.Put(ctx, l.Hash, data[:n]); err != nil {
			return nil, fmt.Errorf("gc: storing the condemned set: %w", err)
		}
		locs = append(locs, l)
		data = data[n:]
	}
	if f, ok := blockstore.As[blockstore.Flusher](st); ok {
		if err := f.Flush(ctx); err != nil {
			return nil, err
		}
	}
	return locs, nil
}

// readSet reads a set written by writeSet, count hashes long.
func readSet(ctx context.Context, st blockstore.Store, locs []blockstore.Locator, count int64) (hashSet, error) {
	const hs = len(blockstore.Hash{})
	var total int64
	for _, l := range locs {
		if err := l.Check(); err != nil || l.Size%int64(hs) != 0 {
			return nil, fmt.Errorf("gc: condemned set block %v: bad size", l)
		}
		total += l.Size
	}
	if total != count*int64(hs) {
		return nil, fmt.Errorf("gc: condemned set of %d bytes for %d hashes", total, count)
	}
	set := make(hashSet, 0, count)
	var buf []byte
	for _, l := range locs {
		buf = slices.Grow(buf[:0], int(l.Size))[:l.Size]
		if err := blockstore.ReadVerified(ctx, st, l, buf); err != nil {
			return nil, fmt.Errorf("gc: reading the condemned set: %w", err)
		}
		for i := 0; i < len(buf); i += hs {
			set = append(set, blockstore.Hash(buf[i:i+hs]))
		}
	}
	if !slices.IsSortedFunc(set, cmpHash) {
		return nil, fmt.Errorf("gc: condemned set is not sorted")
	}
	return set, nil
}
