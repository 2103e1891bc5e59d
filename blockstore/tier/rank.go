package tier

import (
	"encoding/binary"
	"hash/fnv"
	"sort"

	"blockfs/blockstore"
)

// Rendezvous (highest random weight) hashing: every member gets a score
// for every key, and the key's owner is the member with the highest. Every
// client computes the same owner from the same member list, with no
// coordination, so each block is fetched from the store by one member of
// the tier. When a member is down, its keys go to their second-ranked
// member, spread over all the others, while every other key stays where it
// was (a ring would pile a dead member's keys onto its one successor).

// seedOf is a member's identity in the scores: its name (its URL, or the
// URL's fragment, see memberName), so that clients that name the members
// the same way agree on owners.
func seedOf(url string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(url))
	return h.Sum64()
}

// blockKey is a block's key: its hash is SHA-256, already uniform.
func blockKey(h blockstore.Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// nameKey is a ref's key.
func nameKey(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// score mixes a member seed and a key (the splitmix64 finaliser), so that
// near keys or near seeds give unrelated scores.
func score(seed, key uint64) uint64 {
	z := seed ^ key
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// rank returns the indexes of n members with seeds, best first, for key.
func rank(seeds []uint64, key uint64) []int {
	idx := make([]int, len(seeds))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		sa, sb := score(seeds[idx[a]], key), score(seeds[idx[b]], key)
		if sa != sb {
			return sa > sb
		}
		return idx[a] < idx[b]
	})
	return idx
}

// Owner returns which of urls (members as a store string names them)
// owns block h while all are up: the one that fetches it from the store.
// For tests and tools that check the sharding.
func Owner(urls []string, h blockstore.Hash) int {
	seeds := make([]uint64, len(urls))
	for i, u := range urls {
		_, name := memberName(u)
		seeds[i] = seedOf(name)
	}
	return rank(seeds, blockKey(h))[0]
}
