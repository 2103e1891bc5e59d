package diskcache

import "sync/atomic"

// Stats is a snapshot of a Cache's counters (monotonic totals since Open)
// and gauges (current values), JSON-ready for a status endpoint.
type Stats struct {
	Hits           int64 `json:"hits"`            // Gets served from a cache file
	HitBytes       int64 `json:"hit_bytes"`       // bytes those Gets returned
	Misses         int64 `json:"misses"`          // Gets that went to the backend (corrupt refetches included)
	Inserts        int64 `json:"inserts"`         // blocks written to the cache
	Evictions      int64 `json:"evictions"`       // blocks dropped to make room
	CorruptDropped int64 `json:"corrupt_dropped"` // cache files dropped as damaged (truncated, bad CRC, vanished)
	BackendErrors  int64 `json:"backend_errors"`  // backend Gets that failed (returned as is, nothing cached)
	Skipped        int64 `json:"skipped"`         // verified blocks not cached: larger than the room that could be made
	WriteErrors    int64 `json:"write_errors"`    // cache file writes that failed (the Get still succeeds)
	ReadErrors     int64 `json:"read_errors"`     // cache file reads failing for other reasons than damage (served from the backend)
	RemoveErrors   int64 `json:"remove_errors"`   // cache files that could not be removed
	GhostHits      int64 `json:"ghost_hits"`      // misses whose hash was in the ghost queue (admitted straight to main)
	Promotions     int64 `json:"promotions"`      // blocks moved from the small queue to main (re-read while new)
	Bytes          int64 `json:"bytes"`           // gauge: bytes of cache files (data + trailers), temp files being written included
	Entries        int64 `json:"entries"`         // gauge: cached blocks
	MaxBytes       int64 `json:"max_bytes"`       // configured bound on Bytes
}

type counters struct {
	hits, hitBytes, misses, inserts, evictions, corruptDropped    atomic.Int64
	backendErrors, skipped, writeErrors, readErrors               atomic.Int64
	removeErrors, ghostHits, promotions, bytes, entries, maxBytes atomic.Int64
}

// Stats returns the cache's counters without taking its mutex. Each field
// is read atomically; the snapshot as a whole is not.
func (c *Cache) Stats() Stats {
	k := &c.c
	return Stats{
		Hits:           k.hits.Load(),
		HitBytes:       k.hitBytes.Load(),
		Misses:         k.misses.Load(),
		Inserts:        k.inserts.Load(),
		Evictions:      k.evictions.Load(),
		CorruptDropped: k.corruptDropped.Load(),
		BackendErrors:  k.backendErrors.Load(),
		Skipped:        k.skipped.Load(),
		WriteErrors:    k.writeErrors.Load(),
		ReadErrors:     k.readErrors.Load(),
		RemoveErrors:   k.removeErrors.Load(),
		GhostHits:      k.ghostHits.Load(),
		Promotions:     k.promotions.Load(),
		Bytes:          k.bytes.Load(),
		Entries:        k.entries.Load(),
		MaxBytes:       k.maxBytes.Load(),
	}
}

// publishLocked copies the gauges that live under the mutex.
func (c *Cache) publishLocked() {
	c.c.bytes.Store(c.bytes + c.reserved)
	c.c.entries.Store(int64(len(c.entries)))
}
