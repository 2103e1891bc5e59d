package storetest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"

	"blockfs/blockstore"
)

// Block returns n deterministic pseudo-random bytes: the same for the same
// seed and n, different for different seeds.
func Block(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Blocks returns n distinct blocks of size bytes (Block(seed+i, size)).
func Blocks(seed uint64, n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = Block(seed+uint64(i), size)
	}
	return out
}

// Mem is an in-memory blockstore.Store and blockstore.RefStore that keeps
// the whole contract (Run and RunRefs pass on it), for tests that need a
// store and no disk.
type Mem struct {
	mu      sync.RWMutex
	blocks  map[blockstore.Hash][]byte
	refs    map[string][]byte
	version map[string]int
}

var (
	_ blockstore.Store    = (*Mem)(nil)
	_ blockstore.RefStore = (*Mem)(nil)
)

// NewMem returns a Mem holding copies of blocks.
func NewMem(blocks ...[]byte) *Mem {
	m := &Mem{blocks: map[blockstore.Hash][]byte{}, refs: map[string][]byte{}, version: map[string]int{}}
	for _, b := range blocks {
		m.blocks[blockstore.Sum(b)] = append([]byte(nil), b...)
	}
	return m
}

// Get implements blockstore.Store.
func (m *Mem) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if int64(len(dst)) < loc.Size {
		return 0, fmt.Errorf("storetest: get %v: %w: buffer of %d bytes", loc, io.ErrShortBuffer, len(dst))
	}
	m.mu.RLock()
	b, ok := m.blocks[loc.Hash]
	m.mu.RUnlock()
	switch {
	case !ok:
		return 0, fmt.Errorf("%w: storetest get %v", blockstore.ErrNotFound, loc)
	case int64(len(b)) != loc.Size:
		return 0, fmt.Errorf("%w: storetest get %v: block has %d bytes", blockstore.ErrCorrupt, loc, len(b))
	}
	return copy(dst, b), nil
}

// Put implements blockstore.Store.
func (m *Mem) Put(ctx context.Context, h blockstore.Hash, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := blockstore.CheckPut(h, data); err != nil {
		return err
	}
	m.mu.Lock()
	if _, ok := m.blocks[h]; !ok {
		m.blocks[h] = append([]byte(nil), data...)
	}
	m.mu.Unlock()
	return nil
}

// Has implements blockstore.Store.
func (m *Mem) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.blocks[h]
	return ok, nil
}

// List implements blockstore.Store, over a snapshot taken at the start.
func (m *Mem) List(ctx context.Context, fn func(blockstore.Locator) error) error {
	m.mu.RLock()
	locs := make([]blockstore.Locator, 0, len(m.blocks))
	for h, b := range m.blocks {
		locs = append(locs, blockstore.Locator{Hash: h, Size: int64(len(b))})
	}
	m.mu.RUnlock()
	for _, l := range locs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements blockstore.Store.
func (m *Mem) Delete(ctx context.Context, h blockstore.Hash) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blocks[h]; !ok {
		return fmt.Errorf("%w: storetest delete %v", blockstore.ErrNotFound, h)
	}
	delete(m.blocks, h)
	return nil
}

// GetRef implements blockstore.RefStore.
func (m *Mem) GetRef(ctx context.Context, name string) ([]byte, string, error) {
	if err := blockstore.CheckRefName(name); err != nil {
		return nil, "", err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	data, ok := m.refs[name]
	if !ok {
		return nil, "", fmt.Errorf("%w: storetest ref %s", blockstore.ErrNotFound, name)
	}
	return append([]byte(nil), data...), strconv.Itoa(m.version[name]), nil
}

// PutRef implements blockstore.RefStore. Versions count the ref's writes.
func (m *Mem) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	if err := blockstore.CheckRefName(name); err != nil {
		return "", err
	}
	if len(data) > blockstore.MaxRefSize {
		return "", fmt.Errorf("%w: storetest ref %s: %d bytes", blockstore.ErrTooLarge, name, len(data))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, exists := m.refs[name]
	if current := strconv.Itoa(m.version[name]); exists && ifVersion != current || !exists && ifVersion != "" {
		return "", fmt.Errorf("%w: storetest ref %s", blockstore.ErrConflict, name)
	}
	m.refs[name] = append([]byte(nil), data...)
	m.version[name]++
	return strconv.Itoa(m.version[name]), nil
}

// Gate holds every Get until Open (or until the Get's context ends), and
// announces each Get on Entered first, so that a test can line callers up
// behind a fetch without sleeping. It has no Unwrap and no Map on purpose:
// reads through it cannot go around the gate by mapping.
type Gate struct {
	blockstore.Store
	// Entered receives the locator of each Get as it arrives (buffered;
	// a test that lets more than 1024 Gets in must drain it).
	Entered chan blockstore.Locator

	gate    chan struct{}
	once    sync.Once
	ctxErrs atomic.Int64
}

// NewGate returns a closed Gate in front of s.
func NewGate(s blockstore.Store) *Gate {
	return &Gate{Store: s, Entered: make(chan blockstore.Locator, 1024), gate: make(chan struct{})}
}

// Open lets every held and future Get through. It may be called more than
// once.
func (g *Gate) Open() { g.once.Do(func() { close(g.gate) }) }

// CtxErrs returns how many Gets gave up because their context ended.
func (g *Gate) CtxErrs() int64 { return g.ctxErrs.Load() }

// Get announces loc on Entered, then waits for Open or ctx.
func (g *Gate) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	g.Entered <- loc
	select {
	case <-g.gate:
		return g.Store.Get(ctx, loc, dst)
	case <-ctx.Done():
		g.ctxErrs.Add(1)
		return 0, ctx.Err()
	}
}

// Fail fails every Get with Err, itself and unwrapped, while failing (from
// the start; see SetFailing). Like Gate it has no Unwrap and no Map.
type Fail struct {
	blockstore.Store
	Err     error
	passing atomic.Bool
}

// NewFail returns a failing Fail in front of s.
func NewFail(s blockstore.Store, err error) *Fail { return &Fail{Store: s, Err: err} }

// SetFailing switches failing on or off.
func (f *Fail) SetFailing(on bool) { f.passing.Store(!on) }

// Get fails with Err while failing, else reads from the wrapped store.
func (f *Fail) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	if !f.passing.Load() {
		return 0, f.Err
	}
	return f.Store.Get(ctx, loc, dst)
}

// Corrupt returns damaged bytes with no error: one bit flipped, or (Short)
// one byte fewer than read. Like Gate it has no Unwrap and no Map.
type Corrupt struct {
	blockstore.Store
	Short bool
}

// Get reads from the wrapped store and damages what it read.
func (c Corrupt) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	n, err := c.Store.Get(ctx, loc, dst)
	if err != nil || n == 0 {
		return n, err
	}
	if c.Short {
		return n - 1, nil
	}
	dst[n/2] ^= 1
	return n, nil
}
