package blockstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// CountingStore wraps a Store and counts Get (and Map) calls and bytes read, in total
// and per hash, for this package's own tests, which cannot import
// storetest (storetest imports blockstore); every other package uses
// storetest.Counting.
type CountingStore struct {
	Store // the wrapped store

	gets     atomic.Int64
	getBytes atomic.Int64

	mu     sync.Mutex
	byHash map[Hash]int64
}

// NewCountingStore returns a CountingStore wrapping s.
func NewCountingStore(s Store) *CountingStore {
	return &CountingStore{Store: s, byHash: make(map[Hash]int64)}
}

// Unwrap implements Unwrapper.
func (c *CountingStore) Unwrap() Store { return c.Store }

// Get counts the call (successful or not) and the bytes read, then
// delegates.
func (c *CountingStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	c.gets.Add(1)
	c.mu.Lock()
	c.byHash[loc.Hash]++
	c.mu.Unlock()
	n, err := c.Store.Get(ctx, loc, dst)
	c.getBytes.Add(int64(n))
	return n, err
}

// Map counts like Get, since a mapping is a read of the block, then
// delegates if the wrapped store is a Mapper.
func (c *CountingStore) Map(ctx context.Context, loc Locator) (*Mapping, error) {
	m, ok := As[Mapper](c.Store)
	if !ok {
		return nil, fmt.Errorf("blockstore: map %v: %w", loc, errNoMap)
	}
	mp, err := m.Map(ctx, loc)
	if errors.Is(err, errNoMap) {
		return nil, err // not a read: the caller falls back to Get
	}
	c.gets.Add(1)
	c.mu.Lock()
	c.byHash[loc.Hash]++
	c.mu.Unlock()
	if mp != nil {
		c.getBytes.Add(int64(len(mp.Bytes())))
	}
	return mp, err
}

// Gets returns the number of Get calls so far.
func (c *CountingStore) Gets() int64 { return c.gets.Load() }

// GetBytes returns the number of bytes all Get calls have returned.
func (c *CountingStore) GetBytes() int64 { return c.getBytes.Load() }

// GetsOf returns the number of Get calls for hash h.
func (c *CountingStore) GetsOf(h Hash) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byHash[h]
}

// Reset zeroes all counters.
func (c *CountingStore) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets.Store(0)
	c.getBytes.Store(0)
	clear(c.byHash)
}
