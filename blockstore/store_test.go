package blockstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Test stores. They are deliberately tiny; the real backend (DirStore) is
// tested on a real directory in dir_test.go.

// memStore is an in-memory Store.
type memStore struct {
	mu     sync.RWMutex
	blocks map[Hash][]byte
}

func newMemStore(blocks ...[]byte) *memStore {
	m := &memStore{blocks: make(map[Hash][]byte)}
	for _, b := range blocks {
		m.blocks[Sum(b)] = b
	}
	return m
}

func (m *memStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	m.mu.RLock()
	b, ok := m.blocks[loc.Hash]
	m.mu.RUnlock()
	if !ok {
		return 0, fmt.Errorf("%w: %v", ErrNotFound, loc)
	}
	return copy(dst, b), nil
}

func (m *memStore) Put(ctx context.Context, h Hash, data []byte) error {
	if Sum(data) != h {
		return ErrCorrupt
	}
	m.mu.Lock()
	m.blocks[h] = append([]byte(nil), data...)
	m.mu.Unlock()
	return nil
}

func (m *memStore) Has(ctx context.Context, h Hash) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.blocks[h]
	return ok, nil
}

func (m *memStore) List(ctx context.Context, fn func(Locator) error) error {
	m.mu.RLock()
	var locs []Locator
	for h, b := range m.blocks {
		locs = append(locs, Locator{h, int64(len(b))})
	}
	m.mu.RUnlock()
	for _, l := range locs {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Delete(ctx context.Context, h Hash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blocks[h]; !ok {
		return ErrNotFound
	}
	delete(m.blocks, h)
	return nil
}

// gateStore blocks every Get until the gate is opened (or the fetch's
// context ends), and announces each Get on entered, so tests can line
// callers up behind a fetch without sleeping.
type gateStore struct {
	Store
	entered chan Locator
	gate    chan struct{}
	once    sync.Once
	// ctxErrs counts Gets that returned because their context ended.
	ctxErrs atomic.Int64
}

func newGateStore(s Store) *gateStore {
	return &gateStore{Store: s, entered: make(chan Locator, 1024), gate: make(chan struct{})}
}

func (g *gateStore) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gateStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	g.entered <- loc
	select {
	case <-g.gate:
		return g.Store.Get(ctx, loc, dst)
	case <-ctx.Done():
		g.ctxErrs.Add(1)
		return 0, ctx.Err()
	}
}

var errBoom = errors.New("boom")

// failStore fails every Get while failing is set.
type failStore struct {
	Store
	failing atomic.Bool
}

func (f *failStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	if f.failing.Load() {
		return 0, errBoom
	}
	return f.Store.Get(ctx, loc, dst)
}

// corruptStore flips a bit in everything it returns.
type corruptStore struct{ Store }

func (c corruptStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	n, err := c.Store.Get(ctx, loc, dst)
	if n > 0 {
		dst[n/2] ^= 1
	}
	return n, err
}
