package blockstore

import (
	"sync/atomic"

	"blockfs/internal/latency"
)

// PoolStats is a snapshot of a Pool's counters (monotonic totals) and gauges
// (current values). It is JSON-ready for a status endpoint; the names are a
// contract for scripts (docs/operations.md).
//
// In every snapshot, taken however busy the pool is:
//
//	gets == hits + shared + misses
//	fetches == demand_fetches + prefetch_fetches
//	prefetch_fetches >= prefetch_used + prefetch_wasted
//
// misses equals demand_fetches but for the re-fetches of mapped blocks whose
// file changed (counted in changed), which start a fetch within one Get.
type PoolStats struct {
	// Gets are the Get calls that found their block (hits), joined its
	// fetch in flight (shared) or started one (misses). A Get refused
	// before that (busy, a malformed locator, a caller that gave up while
	// waiting for memory) is not one.
	Gets   int64 `json:"gets"`
	Hits   int64 `json:"hits"`
	Shared int64 `json:"shared"`
	Misses int64 `json:"misses"`
	// Fetches are the store reads started: DemandFetches for Gets,
	// Prefetches ahead of them.
	Fetches       int64 `json:"fetches"`
	DemandFetches int64 `json:"demand_fetches"`
	Prefetches    int64 `json:"prefetch_fetches"`
	// A prefetched block is used when a Get asks for it, and wasted when
	// it is evicted before any does: a high wasted share means readahead
	// runs further ahead than the pool can hold.
	PrefetchUsed   int64 `json:"prefetch_used"`
	PrefetchWasted int64 `json:"prefetch_wasted"`
	// ReadBytes are the bytes handed to callers (each Get of a block
	// counts its size); FetchBytes the bytes the store returned. Without
	// the pool every Get would be a store read, so SavedBytes =
	// ReadBytes - FetchBytes is what the pool saved the store (negative
	// when wasted prefetches cost more than sharing saved).
	ReadBytes      int64 `json:"read_bytes"`
	FetchBytes     int64 `json:"fetch_bytes"`
	SavedBytes     int64 `json:"saved_bytes"`
	VerifyFailures int64 `json:"verify_failures"` // fetches whose bytes failed size/SHA-256 checks (subset of errors)
	Errors         int64 `json:"errors"`          // failed fetches (each counted once, however many callers shared it)
	Busy           int64 `json:"busy"`            // Gets refused with ErrBusy
	Evictions      int64 `json:"evictions"`       // cached blocks dropped to make room
	Buffers        int64 `json:"buffers"`         // gauge: buffers holding memory (cached, in use or being fetched)
	BuffersInUse   int64 `json:"buffers_in_use"`  // gauge: buffers referenced by a caller or a running fetch
	BytesHeld      int64 `json:"held_bytes"`      // gauge: capacity of all buffers held; never above MaxBytes
	MaxBytes       int64 `json:"max_bytes"`       // configured bound
	Waiters        int64 `json:"waiters"`         // gauge: Gets waiting for a buffer to become free
	InFlight       int64 `json:"in_flight"`       // gauge: fetches running (a prefetch until its done callback has returned)
	Mapped         int64 `json:"mapped"`          // fetches served by mapping the store's file in place (see Mapper); the rest copied
	Changed        int64 `json:"changed"`         // mapped blocks whose file changed after they were verified (mapped and verified afresh)
	Hung           int64 `json:"hung"`            // gauge: store reads abandoned at their deadline that have not returned yet
	// FetchLatency times each store read (map or copy, until it returned
	// or was abandoned; hashing excluded).
	FetchLatency latency.Snapshot `json:"fetch_latency"`
}

// partition holds the counters whose sums must agree in every snapshot.
// They are updated and read under Pool.mu, where each Get is classified
// anyway, so a snapshot never sees a Get counted but not yet classified.
type partition struct {
	gets, hits, shared, misses     int64
	demandFetches, prefetchFetches int64
	prefetchUsed, prefetchWasted   int64
}

// count classifies one Get that found its block: a hit if it was ready, else
// shared.
func (c *partition) count(ready bool) {
	c.gets++
	if ready {
		c.hits++
	} else {
		c.shared++
	}
}

// poolCounters are updated with atomics so that reading them never slows
// traffic. Gauges are written under the mutex (where the truth lives) but
// read without it.
type poolCounters struct {
	readBytes, fetchBytes, verifyFailures, errors, busy, evictions      atomic.Int64
	buffers, inUse, bytesHeld, waiters, mapped, changed, inFlight, hung atomic.Int64
	fetchLatency                                                        latency.Histogram
}

// Stats returns the pool's counters. The partition counters are read
// together under the pool mutex (a few loads); the rest each atomically.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	part := p.part
	p.mu.Unlock()
	c := &p.c
	st := PoolStats{
		Gets: part.gets, Hits: part.hits, Shared: part.shared, Misses: part.misses,
		Fetches:        part.demandFetches + part.prefetchFetches,
		DemandFetches:  part.demandFetches,
		Prefetches:     part.prefetchFetches,
		PrefetchUsed:   part.prefetchUsed,
		PrefetchWasted: part.prefetchWasted,
		ReadBytes:      c.readBytes.Load(),
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
		InFlight:       c.inFlight.Load(),
		Mapped:         c.mapped.Load(),
		Changed:        c.changed.Load(),
		Hung:           c.hung.Load(),
		FetchLatency:   c.fetchLatency.Snapshot(),
	}
	st.SavedBytes = st.ReadBytes - st.FetchBytes
	return st
}
