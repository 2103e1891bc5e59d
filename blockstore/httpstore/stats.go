package httpstore

import (
	"sync/atomic"

	"blockfs/blockstore/internal/netstore"
)

// ServerStats is a snapshot of a Handler's counters (monotonic totals since
// NewHandler) and its one gauge, InFlight.
type ServerStats struct {
	Requests     int64 `json:"requests"`      // all requests
	BlockGets    int64 `json:"block_gets"`    // GET /v1/blocks/<locator>
	BlockHeads   int64 `json:"block_heads"`   // HEAD /v1/blocks/<locator> or /<hash>
	BlockPuts    int64 `json:"block_puts"`    // PUT /v1/blocks/<hash>
	BlockDeletes int64 `json:"block_deletes"` // DELETE /v1/blocks/<hash>
	Lists        int64 `json:"lists"`         // GET /v1/blocks
	RefGets      int64 `json:"ref_gets"`      // GET and HEAD /v1/refs/<name>
	RefPuts      int64 `json:"ref_puts"`      // PUT /v1/refs/<name>
	StatsGets    int64 `json:"stats_gets"`    // /v1/stats
	HealthChecks int64 `json:"health_checks"` // /healthz
	Other        int64 `json:"other"`         // anything else (bad paths, no route)

	Status2xx int64 `json:"status_2xx"`
	Status3xx int64 `json:"status_3xx"`
	Status4xx int64 `json:"status_4xx"`
	Status5xx int64 `json:"status_5xx"`

	Busy503      int64 `json:"busy_503"`     // 503s: MaxClients, pool ErrBusy, PUT memory
	Unauthorized int64 `json:"unauthorized"` // 401s and 403s
	BadRequests  int64 `json:"bad_requests"` // requests refused for their content (400, 405, 411, 413, 428)
	Canceled     int64 `json:"canceled"`     // clients that went away before their answer
	BytesOut     int64 `json:"bytes_out"`    // response body bytes written
	BytesIn      int64 `json:"bytes_in"`     // request body bytes read (PUTs)
	InFlight     int64 `json:"in_flight"`    // gauge: requests being handled now
	// StaleRefs counts ref reads answered flagged stale: with the last
	// value this server had because the store failed (stale-if-error), or
	// passed on as stale from the tier behind it.
	StaleRefs int64 `json:"stale_refs"`
	// FixedRefGets counts the RefGets answered by the server itself
	// (ServerOptions.FixedRefs: its store's format marker), which reach
	// no store.
	FixedRefGets int64 `json:"fixed_ref_gets"`
	// StoreDown: the last store call that tells (a ref read, a failed
	// block fetch) failed; cleared by the next ref read that succeeds.
	StoreDown bool `json:"store_down"`
}

type serverCounters struct {
	kinds                                     [nKinds]atomic.Int64
	s2xx, s3xx, s4xx, s5xx                    atomic.Int64
	busy, unauthorized, badRequests, canceled atomic.Int64
	bytesOut, bytesIn, inFlight               atomic.Int64
	staleRefs, fixedRefs                      atomic.Int64
}

// status counts one finished request by the class of its status (0: the
// handler wrote nothing, which net/http sends as 200).
func (c *serverCounters) status(code int) {
	switch {
	case code == 0 || code < 300:
		c.s2xx.Add(1)
	case code < 400:
		c.s3xx.Add(1)
	case code < 500:
		c.s4xx.Add(1)
	default:
		c.s5xx.Add(1)
	}
}

// Stats returns the handler's counters; each is read atomically.
func (h *Handler) Stats() ServerStats {
	c := &h.c
	s := ServerStats{
		BlockGets:    c.kinds[kindBlockGet].Load(),
		BlockHeads:   c.kinds[kindBlockHead].Load(),
		BlockPuts:    c.kinds[kindBlockPut].Load(),
		BlockDeletes: c.kinds[kindBlockDelete].Load(),
		Lists:        c.kinds[kindList].Load(),
		RefGets:      c.kinds[kindRefGet].Load(),
		RefPuts:      c.kinds[kindRefPut].Load(),
		StatsGets:    c.kinds[kindStats].Load(),
		HealthChecks: c.kinds[kindHealth].Load(),
		Other:        c.kinds[kindOther].Load(),
		Status2xx:    c.s2xx.Load(),
		Status3xx:    c.s3xx.Load(),
		Status4xx:    c.s4xx.Load(),
		Status5xx:    c.s5xx.Load(),
		Busy503:      c.busy.Load(),
		Unauthorized: c.unauthorized.Load(),
		BadRequests:  c.badRequests.Load(),
		Canceled:     c.canceled.Load(),
		BytesOut:     c.bytesOut.Load(),
		BytesIn:      c.bytesIn.Load(),
		InFlight:     c.inFlight.Load(),
		StaleRefs:    c.staleRefs.Load(),
		FixedRefGets: c.fixedRefs.Load(),
		StoreDown:    h.storeDown.down.Load(),
	}
	s.Requests = s.BlockGets + s.BlockHeads + s.BlockPuts + s.BlockDeletes + s.Lists +
		s.RefGets + s.RefPuts + s.StatsGets + s.HealthChecks + s.Other
	return s
}

// ClientStats is a snapshot of a Client's counters, the same as every
// network store's.
type ClientStats = netstore.Stats

// Stats returns the client's counters; each is read atomically.
func (c *Client) Stats() ClientStats { return c.c.Stats() }
