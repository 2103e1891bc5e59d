package blockstore

import "sync/atomic"

// PoolStats is a snapshot of a Pool's counters (monotonic totals) and gauges
// (current values). It is JSON-ready for a status endpoint.
type PoolStats struct {
	Gets           int64 `json:"gets"`            // Get calls
	Hits           int64 `json:"hits"`            // Gets served from a buffer already holding the block
	Shared         int64 `json:"shared"`          // Gets that joined a fetch already in flight
	Fetches        int64 `json:"fetches"`         // store reads started (Get misses and prefetches)
	FetchBytes     int64 `json:"fetch_bytes"`     // bytes those reads returned
	VerifyFailures int64 `json:"verify_failures"` // fetches whose bytes failed size/SHA-256 checks (subset of errors)
	Errors         int64 `json:"errors"`          // failed fetches (each counted once, however many callers shared it)
	Busy           int64 `json:"busy"`            // Gets refused with ErrBusy
	Evictions      int64 `json:"evictions"`       // cached blocks dropped to make room
	Buffers        int64 `json:"buffers"`         // gauge: buffers holding memory (cached, in use or being fetched)
	BuffersInUse   int64 `json:"buffers_in_use"`  // gauge: buffers referenced by a caller or a running fetch
	BytesHeld      int64 `json:"bytes_held"`      // gauge: capacity of all buffers held; never above MaxBytes
	MaxBytes       int64 `json:"max_bytes"`       // configured bound
	Waiters        int64 `json:"waiters"`         // gauge: Gets waiting for a buffer to become free
	Prefetches     int64 `json:"prefetches"`      // prefetches started
	InFlight       int64 `json:"in_flight"`       // gauge: fetches running (a prefetch until its done callback has returned)
	Mapped         int64 `json:"mapped"`          // fetches served by mapping the store's file in place (see Mapper); the rest copied
	Changed        int64 `json:"changed"`         // mapped blocks whose file changed after they were verified (mapped and verified afresh)
	Hung           int64 `json:"hung"`            // gauge: store reads abandoned at their deadline that have not returned yet
}

// poolCounters are updated with atomics so that Stats never takes the pool
// mutex and reading them never slows traffic. Gauges are written under the
// mutex (where the truth lives) but read without it.
type poolCounters struct {
	gets, hits, shared, fetches, fetchBytes, verifyFailures, errors, busy, evictions atomic.Int64
	buffers, inUse, bytesHeld, waiters, prefetches, mapped, changed, inFlight, hung  atomic.Int64
}

// Stats returns the pool's counters. Each field is read atomically; the
// snapshot as a whole is not, which is fine for monitoring.
func (p *Pool) Stats() PoolStats {
	c := &p.c
	return PoolStats{
		Gets:           c.gets.Load(),
		Hits:           c.hits.Load(),
		Shared:         c.shared.Load(),
		Fetches:        c.fetches.Load(),
		FetchBytes:     c.fetchBytes.Load(),
		VerifyFailures: c.verifyFailures.Load(),
		Errors:         c.errors.Load(),
		Busy:           c.busy.Load(),
		Evictions:      c.evictions.Load(),
		Buffers:        c.buffers.Load(),
		BuffersInUse:   c.inUse.Load(),
		BytesHeld:      c.bytesHeld.Load(),
		MaxBytes:       p.maxBytes,
		Waiters:        c.waiters.Load(),
		Prefetches:     c.prefetches.Load(),
		InFlight:       c.inFlight.Load(),
		Mapped:         c.mapped.Load(),
		Changed:        c.changed.Load(),
		Hung:           c.hung.Load(),
	}
}
