package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"blockfs/blockstore"
)

// Counting wraps a Store and counts reads (Get and Map calls) and the bytes
// they return, in total and per hash, so that tests can assert what the
// Pool promises: the backend saw exactly one read per unique block. It
// counts Map itself (a mapping is a read) and unwraps to the store it
// wraps for every other capability (see blockstore.As).
type Counting struct {
	blockstore.Store // the wrapped store

	gets     atomic.Int64
	getBytes atomic.Int64

	mu     sync.Mutex
	byHash map[blockstore.Hash]int64
}

var (
	_ blockstore.Mapper    = (*Counting)(nil)
	_ blockstore.Unwrapper = (*Counting)(nil)
)

// NewCounting returns a Counting wrapping s.
func NewCounting(s blockstore.Store) *Counting {
	return &Counting{Store: s, byHash: make(map[blockstore.Hash]int64)}
}

// Unwrap implements blockstore.Unwrapper.
func (c *Counting) Unwrap() blockstore.Store { return c.Store }

func (c *Counting) count(h blockstore.Hash, n int) {
	c.gets.Add(1)
	c.getBytes.Add(int64(n))
	c.mu.Lock()
	c.byHash[h]++
	c.mu.Unlock()
}

// Get counts the call (successful or not) and the bytes read, then
// delegates.
func (c *Counting) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	n, err := c.Store.Get(ctx, loc, dst)
	c.count(loc.Hash, n)
	return n, err
}

// Map counts like Get, since a mapping is a read of the block, and
// delegates to the Mapper below if there is one. A store that cannot map
// (errors.ErrUnsupported) has read nothing: that is not counted, and the
// caller falls back to Get.
func (c *Counting) Map(ctx context.Context, loc blockstore.Locator) (*blockstore.Mapping, error) {
	m, ok := blockstore.As[blockstore.Mapper](c.Store)
	if !ok {
		return nil, fmt.Errorf("storetest: map %v: %w", loc, errors.ErrUnsupported)
	}
	mp, err := m.Map(ctx, loc)
	if errors.Is(err, errors.ErrUnsupported) {
		return nil, err
	}
	n := 0
	if mp != nil {
		n = len(mp.Bytes())
	}
	c.count(loc.Hash, n)
	return mp, err
}

// Gets returns the number of reads so far.
func (c *Counting) Gets() int64 { return c.gets.Load() }

// GetBytes returns the number of bytes all reads have returned.
func (c *Counting) GetBytes() int64 { return c.getBytes.Load() }

// GetsOf returns the number of reads of hash h.
func (c *Counting) GetsOf(h blockstore.Hash) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byHash[h]
}

// Reset zeroes all counters.
func (c *Counting) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets.Store(0)
	c.getBytes.Store(0)
	clear(c.byHash)
}
