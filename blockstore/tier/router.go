package tier

import (
	"context"
	"fmt"

	"blockfs/blockstore"
)

// Router is the store of a serve that is a member of a tier (serve
// --peers): it fetches a block from the store only when it is the block's
// owner, and otherwise gets it from the owner, so that clients may ask any
// member for any block (Place) while the tier still reads each block from
// the store once. Everything but Get goes to the local store.
//
// The owner is the first member of the block's ranking that is up as far
// as this serve knows, itself counted as up: a member forwards only to
// members ranked above itself, every member ranks alike, so a request
// climbs the ranking and cannot loop; a peer that fails is marked down
// and the next one asked, and this serve reads the store itself once no
// member above it answers.
type Router struct {
	blockstore.Store // the local store: the one every member reads
	peers            *Store
	self             int
}

// NewRouter returns the Router of the member named self (its name in
// peers' store string: the URL's fragment, else the URL) over local.
func NewRouter(local blockstore.Store, peers *Store, self string) (*Router, error) {
	for i, m := range peers.members {
		if m.name == self {
			return &Router{Store: local, peers: peers, self: i}, nil
		}
	}
	return nil, fmt.Errorf("tier: %s is not a member of %v", self, peers.names())
}

// Unwrap returns the local store.
func (r *Router) Unwrap() blockstore.Store { return r.Store }

// Get implements blockstore.Store: from the owner, as above.
func (r *Router) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	for _, i := range r.peers.ranked(blockKey(loc.Hash)) {
		if i == r.self {
			break
		}
		m := r.peers.members[i]
		if m.isDown() {
			continue
		}
		var n int
		err := m.do(ctx, func(m *member) error {
			var err error
			n, err = m.c.Get(ctx, loc, dst)
			return err
		})
		if err == nil || !memberFailure(ctx, err) {
			return n, err
		}
	}
	return r.Store.Get(ctx, loc, dst)
}
