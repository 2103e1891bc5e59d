package httpstore

import (
	"fmt"
	"sync/atomic"

	"blockfs/blockstore"
)

// Handler.Health is what a serve says of itself in /v1/stats and its
// metrics. /healthz stays "ok" while the process answers: the tier's
// clients probe it, and a serve that lost its store must stay in use for
// what its pool holds and its last refs (stale-if-error); health is the
// operator's signal, liveness the clients'.

// ReasonStoreFails prefixes the Health reason of a server whose own store
// failed its last telling call.
const ReasonStoreFails = "the store does not answer"

// storeHealth is the last store failure a Handler saw, for its reason.
type storeHealth struct {
	down    atomic.Bool
	lastErr atomic.Pointer[string]
}

// markDown records a store failure: the server answers refs from its last
// values and blocks from its pool until a ref read succeeds again.
func (s *storeHealth) markDown(err error) {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	s.lastErr.Store(&msg)
	s.down.Store(true)
}

func (s *storeHealth) markUp() { s.down.Store(false) }

// Health implements blockstore.HealthReporter for the server itself: not
// healthy while its store's last telling call failed (a ref read, a block
// fetch), nor while its store, itself a tier or another serve, reports that
// the store behind it is down, so that every layer of a tier says so.
func (h *Handler) Health() (ok bool, reason string) {
	if h.storeDown.down.Load() {
		reason = ReasonStoreFails
		if p := h.storeDown.lastErr.Load(); p != nil {
			reason = fmt.Sprintf("%s (last: %s)", reason, *p)
		}
		return false, reason
	}
	return blockstore.Health(h.store)
}

var _ blockstore.HealthReporter = (*Handler)(nil)
