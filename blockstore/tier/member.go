package tier

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/internal/netstore"
)

// member is one server of the tier and what the tier knows of its health.
type member struct {
	url   string
	name  string // what it is hashed by (see memberName)
	group int    // index of its group in the store string
	c     *httpstore.Client

	down      atomic.Bool
	mu        sync.Mutex // guards downSince, lastErr
	downSince time.Time
	lastErr   string

	requests, failures, downs, probes, recoveries atomic.Int64
}

func (m *member) isDown() bool { return m.down.Load() }

// do runs fn on m, counting it, and marks m down if it failed as a member
// (see memberFailure), or up if it answered while marked down.
func (m *member) do(ctx context.Context, fn func(*member) error) error {
	m.requests.Add(1)
	err := fn(m)
	var perm permanentErr
	switch {
	case err == nil:
		m.markUp()
	case errors.As(err, &perm):
		// fn judged the member itself (see failed)
	case memberFailure(ctx, err):
		m.failed(err)
	default:
		m.markUp() // a definite answer: the member is alive
	}
	return err
}

// failed counts a member failure and marks m down.
func (m *member) failed(err error) {
	m.failures.Add(1)
	m.markDown(time.Now(), err)
}

func (m *member) markDown(now time.Time, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.down.Load() {
		m.downSince = now
		m.downs.Add(1)
		m.down.Store(true)
	}
	m.lastErr = netstore.Describe(err, nil)
}

func (m *member) markUp() {
	if !m.down.Load() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down.CompareAndSwap(true, false) {
		m.recoveries.Add(1)
	}
}

// probe pings the members marked down, every ProbeInterval (±25% so a
// crowd of clients does not probe a restarted server in one instant), and
// marks up those that answer.
func (s *Store) probe() {
	defer s.wg.Done()
	iv := s.opts.ProbeInterval
	for {
		d := iv*3/4 + time.Duration(rand.Int64N(int64(iv/2)+1))
		t := time.NewTimer(d)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		for _, m := range s.members {
			if !m.isDown() {
				continue
			}
			m.mu.Lock()
			since := m.downSince
			m.mu.Unlock()
			if time.Since(since) < iv {
				continue // down for a while first
			}
			m.probes.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), iv)
			err := m.c.Ping(ctx)
			cancel()
			if err == nil {
				m.markUp()
			} else {
				m.markDown(time.Now(), err)
			}
		}
	}
}

// MemberStats is what a tier client knows of one member.
type MemberStats struct {
	URL        string                `json:"url"`
	Group      int                   `json:"group"`                // its group: 0 first, then the fallbacks in order
	State      string                `json:"state"`                // "up" or "down"
	Requests   int64                 `json:"requests"`             // calls sent to it (a call may try several members)
	Failures   int64                 `json:"failures"`             // of those, member failures (refused, timeout, 5xx)
	Downs      int64                 `json:"downs"`                // times marked down
	Probes     int64                 `json:"probes"`               // health probes while down
	Recoveries int64                 `json:"recoveries"`           // times back up
	LastError  string                `json:"last_error,omitempty"` // why it was last marked down
	StaleRefs  int64                 `json:"stale_refs"`           // ref answers it flagged stale
	StoreDown  bool                  `json:"store_down"`           // its last ref answer was stale
	Client     httpstore.ClientStats `json:"client"`               // the HTTP client's counters
}

// Stats is a snapshot of a tier client's view of its members.
type Stats struct {
	Members []MemberStats `json:"members"`
	Up      int           `json:"up"` // members up now
	// StoreDown: the tier's last ref answer was stale (served from a
	// member's last value because the store behind it failed): the tier
	// answers, the store behind it does not.
	StoreDown bool `json:"store_down"`
	// StaleRefs counts the stale ref answers members gave.
	StaleRefs int64 `json:"stale_refs"`
}

// Health implements blockstore.HealthReporter: unhealthy while the tier's
// last ref answer was stale (the store behind the tier is down, see
// Stats.StoreDown) or while no member is up.
func (s *Store) Health() (bool, string) {
	up := 0
	for _, m := range s.members {
		if !m.isDown() {
			up++
		}
	}
	if up == 0 {
		return false, "no member of the read tier is up"
	}
	if s.refStale.Load() {
		return false, blockstore.ReasonStoreDown
	}
	return true, ""
}

// Stats returns the per-member counters and states.
func (s *Store) Stats() Stats {
	st := Stats{StoreDown: s.refStale.Load()}
	for _, m := range s.members {
		ms := MemberStats{
			URL: m.url, Group: m.group, State: "up", Requests: m.requests.Load(), Failures: m.failures.Load(),
			Downs: m.downs.Load(), Probes: m.probes.Load(), Recoveries: m.recoveries.Load(), Client: m.c.Stats(),
		}
		if m.isDown() {
			ms.State = "down"
		} else {
			st.Up++
		}
		m.mu.Lock()
		ms.LastError = m.lastErr
		m.mu.Unlock()
		ms.StaleRefs, ms.StoreDown = m.c.Upstream()
		st.StaleRefs += ms.StaleRefs
		st.Members = append(st.Members, ms)
	}
	return st
}
