// Package gc collects the blocks no retained snapshot reaches, without a
// global lock: a run condemns what is unreachable, a later run deletes what
// is still unreachable, and writers (imports, mounts, catalog commands) hold
// leases in the same ref the collector moves through its phases, so that
// every compare-and-swap orders a writer against the collector. The
// argument is in docs/gc.md; the ref's format is State.
package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"blockfs/blockstore"
)

// StateRef is the ref holding the collector's phase and every lease. One ref
// for both is what makes the protocol linearisable: a lease registered by a
// CAS either precedes a condemnation or a sweep's start, or sees it.
const StateRef = "meta/gc"

const stateFormat = 1

// Phases of the collector.
const (
	PhaseIdle      = "idle"      // nothing condemned
	PhaseCondemned = "condemned" // Condemned lists blocks a later run may delete
	PhaseSweeping  = "sweeping"  // a run is deleting them (Sweep says until when)
)

// State is the value of StateRef.
type State struct {
	Format int `json:"format"`
	// Epoch counts condemnations: a lease records the epoch it registered
	// in, so the collector knows which leases may have seen a block before
	// it was condemned.
	Epoch     uint64     `json:"epoch"`
	Phase     string     `json:"phase"`
	Condemned *Condemned `json:"condemned,omitempty"`
	Sweep     *Sweep     `json:"sweep,omitempty"`
	Leases    []Lease    `json:"leases"`
}

// Condemned is the set of blocks a run found unreachable, stored as blocks
// (sorted binary hashes) because it can be far larger than a ref.
type Condemned struct {
	Time   time.Time            `json:"time"`
	Host   string               `json:"host"`
	Count  int64                `json:"count"`
	Bytes  int64                `json:"bytes"`
	Blocks []blockstore.Locator `json:"blocks"` // the hash list's blocks
}

// Sweep is the lease of the run deleting the condemned blocks.
type Sweep struct {
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	Expires time.Time `json:"expires"`
}

// Lease kinds.
const (
	KindImport  = "import"
	KindMount   = "mount"
	KindCatalog = "catalog" // tag, rollback, repair: they reference old metadata
)

// Lease is a writer's or reader's claim, renewed while it runs.
type Lease struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Epoch   uint64    `json:"epoch"` // State.Epoch when it registered
	// Reusing says the holder reuses (or may reuse) blocks condemned in
	// Epoch: no sweep of that epoch may start while it lives.
	Reusing bool `json:"reusing,omitempty"`
	// Generation is the oldest snapshot a mount serves: the collector keeps
	// it and every later one. 0 means not known yet: keep every snapshot.
	Generation uint64               `json:"generation,omitempty"`
	Manifest   []blockstore.Locator `json:"manifest,omitempty"` // that snapshot's manifest
}

// DefaultSkew is the clock difference between hosts the protocol
// tolerates: a lease counts as live until Skew after its expiry.
const DefaultSkew = 2 * time.Minute

// live reports whether l protects what it names at time now, judged on
// this host's clock with skew allowed for the holder's.
func (l Lease) live(now time.Time, skew time.Duration) bool { return now.Before(l.Expires.Add(skew)) }

func (s Sweep) live(now time.Time, skew time.Duration) bool { return now.Before(s.Expires.Add(skew)) }

// refs is the store's ref interface with the state read and written by CAS.
type refs struct {
	r blockstore.RefStore
}

// load reads the state and its version ("" and an idle state if none).
func (r refs) load(ctx context.Context) (State, string, error) {
	raw, version, err := r.r.GetRef(ctx, StateRef)
	if errors.Is(err, blockstore.ErrNotFound) {
		return State{Format: stateFormat, Phase: PhaseIdle}, "", nil
	}
	if err != nil {
		return State{}, "", fmt.Errorf("gc: reading %s: %w", StateRef, err)
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return State{}, "", fmt.Errorf("gc: %s: %w", StateRef, err)
	}
	if s.Format != stateFormat {
		return State{}, "", fmt.Errorf("gc: %s has format %d (this blockfs knows %d)", StateRef, s.Format, stateFormat)
	}
	switch s.Phase {
	case PhaseIdle, PhaseCondemned, PhaseSweeping:
	default:
		return State{}, "", fmt.Errorf("gc: %s: unknown phase %q", StateRef, s.Phase)
	}
	if s.Phase != PhaseIdle && s.Condemned == nil || s.Phase == PhaseSweeping && s.Sweep == nil {
		return State{}, "", fmt.Errorf("gc: %s: phase %s without its record", StateRef, s.Phase)
	}
	return s, version, nil
}

// errNoChange from an update function leaves the state as it is.
var errNoChange = errors.New("no change")

// update applies fn to the current state and writes it by compare-and-swap,
// retrying with jittered backoff while others change it. fn may run several
// times; it returns errNoChange to write nothing. Expired leases (judged
// with skew) are pruned on every write.
func (r refs) update(ctx context.Context, skew time.Duration, fn func(*State) error) (State, error) {
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s, version, err := r.load(ctx)
		if err != nil {
			return s, err
		}
		if err := fn(&s); err != nil {
			if errors.Is(err, errNoChange) {
				return s, nil
			}
			return s, err
		}
		now := time.Now()
		kept := s.Leases[:0:0]
		for _, l := range s.Leases {
			if l.live(now, skew) {
				kept = append(kept, l)
			}
		}
		s.Leases = kept
		data, err := json.Marshal(s)
		if err != nil {
			return s, err
		}
		if len(data) > blockstore.MaxRefSize {
			return s, fmt.Errorf("gc: %s would be %d bytes: too many leases", StateRef, len(data))
		}
		_, err = r.r.PutRef(ctx, StateRef, data, version)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, blockstore.ErrConflict) || attempt >= 100 {
			return s, fmt.Errorf("gc: writing %s: %w", StateRef, err)
		}
		select {
		case <-time.After(backoff/2 + rand.N(backoff)):
		case <-ctx.Done():
			return s, ctx.Err()
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// find returns the index of lease id in s, or -1.
func (s *State) find(id string) int {
	for i, l := range s.Leases {
		if l.ID == id {
			return i
		}
	}
	return -1
}
