package tier

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"blockfs/blockstore"
)

// Bounded-load serving. Rendezvous hashing gives each member a share of the
// blocks as independent draws do: uneven (the busiest of 4 members gets
// about 1.08x of an even share of 500 blocks), and the busiest member's
// uplink sets the time a file takes to reach every node. Which member
// fetches a block from the store must not depend on anything but the block
// (a block in two files, or two generations, would get two owners and two
// store GETs), so the owner stays the rendezvous owner. What Place moves is
// which member a client asks: a member that is not the owner gets the block
// from the owner (Router), so a client that places differently from another
// costs one transfer inside the tier, never a store GET.

// maxHints bounds the placement hints a client keeps; past it they are
// dropped, and blocks go to their owners again.
const maxHints = 1 << 20

// hints are a client's placement: for some blocks, the member to ask first
// instead of the owner.
type hints struct {
	mu sync.RWMutex
	to map[blockstore.Hash]int
}

func (h *hints) get(hash blockstore.Hash) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if i, ok := h.to[hash]; ok {
		return i
	}
	return -1
}

// Place implements blockstore.Placer: the blocks of locs (distinct, holes
// left out) are spread over the first group, in hash order, each to the
// best-ranked member whose share of the bytes is still below an even share
// plus one block; those that land elsewhere than their owner are asked of
// that member first while it is up. Every client placing the same blocks
// over the same members places them alike. Off unless SetBalance.
func (s *Store) Place(locs []blockstore.Locator) {
	if !s.balance.Load() || len(s.groups[0]) < 2 {
		return
	}
	blocks := distinct(locs)
	if len(blocks) < 2 {
		return
	}
	group := s.groups[0]
	var total, largest int64
	for _, l := range blocks {
		total += l.Size
		largest = max(largest, l.Size)
	}
	limit := total/int64(len(group)) + largest
	load := make(map[int]int64, len(group))
	moved := map[blockstore.Hash]int{}
	for _, l := range blocks {
		ranked := s.ranked(blockKey(l.Hash))[:len(group)]
		to := ranked[0]
		for _, i := range ranked {
			if load[i]+l.Size <= limit {
				to = i
				break
			}
		}
		load[to] += l.Size
		if to != ranked[0] {
			moved[l.Hash] = to
		}
	}
	s.hints.mu.Lock()
	defer s.hints.mu.Unlock()
	if s.hints.to == nil || len(s.hints.to)+len(moved) > maxHints {
		s.hints.to = make(map[blockstore.Hash]int, len(moved))
	}
	for _, l := range blocks {
		delete(s.hints.to, l.Hash) // placed afresh: at its owner unless moved
	}
	for h, i := range moved {
		s.hints.to[h] = i
	}
}

// SetBalance turns Place on (it is off by default): only for a tier whose
// members forward blocks they do not own to the owner (serve --peers, see
// Router); a plain member would fetch a placed block from the store itself.
// See CheckForwarding.
func (s *Store) SetBalance(on bool) { s.balance.Store(on) }

// CheckForwarding asks every member of the first group that is up whether
// it forwards to owners (its /v1/stats lists its peers), so that a client
// about to balance is told of a serve without --peers instead of making
// the store see blocks twice. Members down now cannot be asked.
func (s *Store) CheckForwarding(ctx context.Context) error {
	for _, i := range s.groups[0] {
		m := s.members[i]
		if m.isDown() {
			continue
		}
		b, err := m.c.ServerStats(ctx)
		if err != nil {
			return fmt.Errorf("tier: asking %s whether it forwards: %w", m.url, err)
		}
		var st struct {
			Peers *Stats `json:"peers"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("tier: %s: unreadable stats: %w", m.url, err)
		}
		if st.Peers == nil {
			return fmt.Errorf("tier: %s does not forward blocks it does not own to their owner (a serve without --peers)", m.url)
		}
	}
	return nil
}

// distinct returns locs without holes and repeats, in hash order: the
// order every client places them in.
func distinct(locs []blockstore.Locator) []blockstore.Locator {
	out := make([]blockstore.Locator, 0, len(locs))
	for _, l := range locs {
		if l.Hash != (blockstore.Hash{}) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b blockstore.Locator) int { return slices.Compare(a.Hash[:], b.Hash[:]) })
	return slices.CompactFunc(out, func(a, b blockstore.Locator) bool { return a.Hash == b.Hash })
}

var _ blockstore.Placer = (*Store)(nil)
