package gc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"blockfs/blockstore"
)

// ErrLeaseLost is the cause of a lease's context once the lease could not
// be renewed before it expired: the collector may no longer respect it, so
// its holder must not publish.
var ErrLeaseLost = errors.New("gc lease lost (not renewed before it expired)")

// LeaseOptions say what a lease protects and how it is kept.
type LeaseOptions struct {
	Kind string // KindImport, KindMount, KindCatalog
	// TTL is how long a lease lasts unrenewed (default 5 minutes); it is
	// renewed every TTL/3.
	TTL  time.Duration
	Skew time.Duration // default DefaultSkew
	// Reusing registers the lease as reusing condemned blocks from the
	// start (catalog commands, which reference old metadata).
	Reusing bool
	// AvoidSweep waits, before registering, while a sweep deletes: a
	// reader that picks its snapshot after registering cannot then pick one
	// a sweep already judged dead.
	AvoidSweep bool
	// Reacquire re-registers a lease found expired instead of failing, and
	// calls OnReacquire (a mount: refresh what it serves).
	Reacquire   bool
	OnReacquire func()
}

// Held is a registered lease, renewed by a goroutine until Release.
type Held struct {
	blocks blockstore.Store
	refs   refs
	opts   LeaseOptions

	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	lease    Lease
	set      hashSet // blocks condemned in lease.Epoch (nil: none, or not read yet)
	setRead  bool
	setState *Condemned
	over     bool // a Reuse saw the sweep of lease.Epoch over
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var hostname = func() string { h, _ := os.Hostname(); return h }()

// Acquire registers a lease and starts renewing it. Its Context is
// cancelled (cause ErrLeaseLost) if it cannot be renewed in time, unless
// opts.Reacquire.
func Acquire(ctx context.Context, blocks blockstore.Store, rs blockstore.RefStore, opts LeaseOptions) (*Held, error) {
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Minute
	}
	if opts.Skew <= 0 {
		opts.Skew = DefaultSkew
	}
	h := &Held{blocks: blocks, refs: refs{rs}, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if err := h.register(ctx); err != nil {
		return nil, err
	}
	h.ctx, h.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	go h.renewLoop()
	return h, nil
}

// register adds a new lease to the state, waiting first for a live sweep
// to end if opts.AvoidSweep.
func (h *Held) register(ctx context.Context) error {
	l := Lease{ID: newID(), Kind: h.opts.Kind, Host: hostname, PID: os.Getpid(), Reusing: h.opts.Reusing}
	for {
		var sweeping bool
		s, err := h.refs.update(ctx, h.opts.Skew, func(s *State) error {
			now := time.Now()
			sweeping = h.opts.AvoidSweep && s.Phase == PhaseSweeping && s.Sweep.live(now, h.opts.Skew)
			if sweeping {
				return errNoChange
			}
			l.Created, l.Expires, l.Epoch = now, now.Add(h.opts.TTL), s.Epoch
			s.Leases = append(s.Leases, l)
			return nil
		})
		if err != nil {
			return err
		}
		if !sweeping {
			h.mu.Lock()
			h.lease, h.set, h.setRead, h.setState, h.over = l, nil, false, nil, false
			if s.Phase != PhaseIdle && s.Epoch == l.Epoch {
				h.setState = s.Condemned
			}
			h.mu.Unlock()
			return nil
		}
		if err := waitPoll(ctx); err != nil {
			return err
		}
	}
}

func waitPoll(ctx context.Context) error {
	select {
	case <-time.After(100 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Bind returns a context derived from parent that is also cancelled (cause
// ErrLeaseLost) when the lease is lost: work that must not outlive the
// protection (an import and its publishes) runs under it.
func (h *Held) Bind(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := context.AfterFunc(h.ctx, func() {
		if cause := context.Cause(h.ctx); errors.Is(cause, ErrLeaseLost) {
			cancel(cause)
		}
	})
	return ctx, func() { stop(); cancel(context.Canceled) }
}

// Lease is the lease as last written.
func (h *Held) Lease() Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease
}

func (h *Held) renewLoop() {
	defer close(h.done)
	for {
		h.mu.Lock()
		expires := h.lease.Expires
		h.mu.Unlock()
		next := time.Until(expires) - 2*h.opts.TTL/3
		select {
		case <-h.stop:
			return
		case <-time.After(max(next, h.opts.TTL/30)):
		}
		err := h.renew(h.ctx)
		h.mu.Lock()
		lost := err != nil && !time.Now().Before(h.lease.Expires)
		h.mu.Unlock()
		if errors.Is(err, errGone) || lost {
			if !h.opts.Reacquire {
				h.cancel(ErrLeaseLost)
				return
			}
			if rerr := h.register(h.ctx); rerr == nil && h.opts.OnReacquire != nil {
				h.opts.OnReacquire()
			}
		}
	}
}

var errGone = errors.New("lease no longer in the state")

// renew extends the lease by TTL. A lease already pruned from the state,
// or expired on this host's clock, is gone: the collector may have acted.
func (h *Held) renew(ctx context.Context) error {
	id := h.Lease().ID
	var got Lease
	_, err := h.refs.update(ctx, h.opts.Skew, func(s *State) error {
		i := s.find(id)
		now := time.Now()
		if i < 0 || !now.Before(s.Leases[i].Expires) {
			return errGone
		}
		s.Leases[i].Expires = now.Add(h.opts.TTL)
		got = s.Leases[i]
		return nil
	})
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.lease = got
	h.mu.Unlock()
	return nil
}

// SetSnapshot names the oldest snapshot a mount serves (its generation and
// manifest): the collector keeps it and every later one.
func (h *Held) SetSnapshot(ctx context.Context, generation uint64, manifest []blockstore.Locator) error {
	id := h.Lease().ID
	s, err := h.refs.update(ctx, h.opts.Skew, func(s *State) error {
		i := s.find(id)
		if i < 0 {
			return errGone
		}
		s.Leases[i].Generation, s.Leases[i].Manifest = generation, manifest
		return nil
	})
	if err != nil {
		return err
	}
	h.mu.Lock()
	if i := s.find(id); i >= 0 {
		h.lease = s.Leases[i]
	}
	h.mu.Unlock()
	return nil
}

// Reuse is asked before the holder reuses a block the store says it has
// instead of uploading it. True means the block is protected for as long
// as the lease lives; false means a sweep may have deleted it since the
// holder looked: ask the store again and upload it if it is missing (once
// Reuse said false for a lease, later sweeps are held off by the lease's
// epoch, so the answer of that second look stands).
func (h *Held) Reuse(ctx context.Context, b blockstore.Hash) (bool, error) {
	h.mu.Lock()
	reusing, epoch, st, over := h.lease.Reusing, h.lease.Epoch, h.setState, h.over
	h.mu.Unlock()
	if reusing || st == nil {
		return true, nil // nothing condemned in this lease's epoch, or already held off
	}
	set, err := h.condemned(ctx, st)
	if err != nil || !set.has(b) {
		return err == nil, err
	}
	if over {
		return false, nil
	}
	id := h.Lease().ID
	for {
		var wait, ok bool
		s, err := h.refs.update(ctx, h.opts.Skew, func(s *State) error {
			wait, ok = false, false
			i := s.find(id)
			now := time.Now()
			switch {
			case i < 0:
				return fmt.Errorf("gc: %w", ErrLeaseLost)
			case s.Epoch != epoch || s.Phase == PhaseIdle:
				return errNoChange // that sweep is over: look again
			case s.Phase == PhaseSweeping && s.Sweep.live(now, h.opts.Skew):
				wait = true
				return errNoChange
			case s.Phase == PhaseSweeping:
				// Its sweeper died (or lost its lease): abort the sweep; a
				// later run starts it again, and must wait for this lease.
				s.Phase, s.Sweep = PhaseCondemned, nil
			}
			s.Leases[i].Reusing = true
			ok = true
			return nil
		})
		if err != nil {
			return false, err
		}
		if !wait {
			h.mu.Lock()
			if ok {
				h.lease = s.Leases[s.find(id)]
			} else {
				h.over = true
			}
			h.mu.Unlock()
			return ok, nil
		}
		if err := waitPoll(ctx); err != nil {
			return false, err
		}
	}
}

// condemned reads (once) the set condemned in the lease's epoch.
func (h *Held) condemned(ctx context.Context, st *Condemned) (hashSet, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.setRead {
		set, err := readSet(ctx, h.blocks, st.Blocks, st.Count)
		if err != nil {
			return nil, err
		}
		h.set, h.setRead = set, true
	}
	return h.set, nil
}

// Release removes the lease: what it protected may be collected.
func (h *Held) Release(ctx context.Context) error {
	select {
	case <-h.stop:
		return nil
	default:
	}
	close(h.stop)
	<-h.done
	h.cancel(context.Canceled)
	id := h.Lease().ID
	_, err := h.refs.update(ctx, h.opts.Skew, func(s *State) error {
		i := s.find(id)
		if i < 0 {
			return errNoChange
		}
		s.Leases = append(s.Leases[:i], s.Leases[i+1:]...)
		return nil
	})
	return err
}
