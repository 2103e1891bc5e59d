// Package limit bounds the requests a server sends to its backing store at
// once, with a bounded queue behind the bound. A `blockfs serve` already
// shares one fetch per block among its clients, but a cold start of many
// distinct blocks (a whole model read by many nodes) would otherwise send as
// many concurrent store requests as it has clients in service: that is the
// back-to-source storm S3 answers with SlowDown. Past the queue a call fails
// at once with blockstore.ErrBusy, which a serve answers 503 + Retry-After,
// so clients wait (with jitter) instead of piling onto the store.
package limit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"blockfs/blockstore"
)

// Options bound a Store. Zero fields take the defaults.
type Options struct {
	// MaxConcurrent bounds store calls in progress at once (default 64).
	MaxConcurrent int
	// MaxQueue bounds calls waiting for one of those slots (default
	// 16 × MaxConcurrent); beyond it a call gets ErrBusy at once.
	MaxQueue int
}

// Defaults for zero Options fields.
const (
	DefaultMaxConcurrent = 64
	queuePerSlot         = 16
)

// Store bounds the concurrent calls to the Store it wraps. Every method
// that reaches the store (Get, Map, Put, PutHashed, Has, List, Delete)
// takes a slot; refs and the other capabilities pass through Unwrap, since
// they are few and a ref read must not queue behind a storm of blocks.
type Store struct {
	inner   blockstore.Store
	slots   chan struct{}
	queued  atomic.Int64
	max     int64
	waits   atomic.Int64
	refused atomic.Int64
	peak    atomic.Int64
}

var (
	_ blockstore.Store        = (*Store)(nil)
	_ blockstore.Mapper       = (*Store)(nil)
	_ blockstore.HashedPutter = (*Store)(nil)
	_ blockstore.Unwrapper    = (*Store)(nil)
)

// New returns s bounded by opts.
func New(s blockstore.Store, opts Options) *Store {
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = queuePerSlot * opts.MaxConcurrent
	}
	return &Store{inner: s, slots: make(chan struct{}, opts.MaxConcurrent), max: int64(opts.MaxQueue)}
}

// Unwrap exposes the bounded store (refs, Keeper, Flush and the backend's
// own stats are found through it).
func (s *Store) Unwrap() blockstore.Store { return s.inner }

// Stats is a snapshot of a Store's counters.
type Stats struct {
	InService int64 `json:"in_service"` // gauge: calls holding a slot
	Queued    int64 `json:"queued"`     // gauge: calls waiting for one
	Peak      int64 `json:"peak"`       // most calls in service at once
	Waits     int64 `json:"waits"`      // calls that had to queue
	Refused   int64 `json:"refused"`    // calls refused with ErrBusy (queue full)
	Max       int64 `json:"max"`        // the bound
}

// Stats returns the counters; each is read atomically.
func (s *Store) Stats() Stats {
	return Stats{
		InService: int64(len(s.slots)), Queued: s.queued.Load(), Peak: s.peak.Load(),
		Waits: s.waits.Load(), Refused: s.refused.Load(), Max: int64(cap(s.slots)),
	}
}

// errQueueFull is the ErrBusy of a call that found the queue full.
var errQueueFull = fmt.Errorf("%w: store requests at their bound and the queue full", blockstore.ErrBusy)

// acquire takes a slot, queueing if there is room in the queue, until ctx
// ends.
func (s *Store) acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		s.notePeak()
		return nil
	default:
	}
	if s.queued.Add(1) > s.max {
		s.queued.Add(-1)
		s.refused.Add(1)
		return errQueueFull
	}
	defer s.queued.Add(-1)
	s.waits.Add(1)
	select {
	case s.slots <- struct{}{}:
		s.notePeak()
		return nil
	case <-ctx.Done():
		return fmt.Errorf("limit: waiting for a store slot: %w", ctx.Err())
	}
}

func (s *Store) notePeak() {
	n := int64(len(s.slots))
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (s *Store) release() { <-s.slots }

// Get implements blockstore.Store.
func (s *Store) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	if err := s.acquire(ctx); err != nil {
		return 0, err
	}
	defer s.release()
	return s.inner.Get(ctx, loc, dst)
}

// Map implements blockstore.Mapper: it takes a slot too, or a Mapper below
// would let mapped reads bypass the bound (see blockstore.As).
func (s *Store) Map(ctx context.Context, loc blockstore.Locator) (*blockstore.Mapping, error) {
	m, ok := blockstore.As[blockstore.Mapper](s.inner)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	return m.Map(ctx, loc)
}

// Put implements blockstore.Store.
func (s *Store) Put(ctx context.Context, h blockstore.Hash, data []byte) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	return s.inner.Put(ctx, h, data)
}

// PutHashed implements blockstore.HashedPutter.
func (s *Store) PutHashed(ctx context.Context, h blockstore.Hash, data []byte) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	return blockstore.PutHashed(ctx, s.inner, h, data)
}

// Has implements blockstore.Store.
func (s *Store) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	if err := s.acquire(ctx); err != nil {
		return false, err
	}
	defer s.release()
	return s.inner.Has(ctx, h)
}

// List implements blockstore.Store (one slot for the whole listing).
func (s *Store) List(ctx context.Context, fn func(blockstore.Locator) error) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	return s.inner.List(ctx, fn)
}

// Delete implements blockstore.Store.
func (s *Store) Delete(ctx context.Context, h blockstore.Hash) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	return s.inner.Delete(ctx, h)
}
