package main

import (
	"blockfs/blockstore"
	"blockfs/blockstore/diskcache"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/metrics"
)

// The Prometheus metrics read from the snapshots that `blockfs stats`
// shows, named to Prometheus' conventions (docs/operations.md lists them
// all with the stats field each mirrors).

// exportMount exports a mount's counters as Prometheus metrics.
func exportMount(reg *metrics.Registry, m *mount.Mount, vol *volume.Volume) {
	reg.Export(func(e metrics.Emit) {
		st := m.Stats()
		emitPool(e, st.Pool)
		emitFuse(e, st.Fuse)
		emitMeta(e, st.Meta)
		emitHealthy(e, st.Healthy)
	})
	exportCache(reg, vol.Store())
}

// exportServe exports a server's pool and HTTP counters and its health.
func exportServe(reg *metrics.Registry, pool *blockstore.Pool, h *httpstore.Handler, store *storeurl.Stack) {
	reg.Export(func(e metrics.Emit) {
		emitPool(e, pool.Stats())
		emitHTTP(e, h.Stats())
		ok, _ := h.Health()
		emitHealthy(e, ok)
	})
	exportCache(reg, store)
}

// emitHealthy is the one health gauge of a mount and of a serve, so that
// one alert covers both.
func emitHealthy(e metrics.Emit, ok bool) {
	healthy := 0.0
	if ok {
		healthy = 1
	}
	e.Gauge("blockfs_healthy", "1 while the store answers (and, on a mount, holds the metadata it serves); 0 otherwise (see `blockfs stats` for why).", healthy)
}

func emitPool(e metrics.Emit, p blockstore.PoolStats) {
	const gets = "Pool Gets by result: hit (block held), shared (joined a fetch in flight), miss (started a fetch)."
	e.Counter("blockfs_pool_gets_total", gets, float64(p.Hits), "result", "hit")
	e.Counter("blockfs_pool_gets_total", gets, float64(p.Shared), "result", "shared")
	e.Counter("blockfs_pool_gets_total", gets, float64(p.Misses), "result", "miss")
	const fetches = "Store reads the pool started, by kind: demand (for a Get) or prefetch (readahead)."
	e.Counter("blockfs_pool_fetches_total", fetches, float64(p.DemandFetches), "kind", "demand")
	e.Counter("blockfs_pool_fetches_total", fetches, float64(p.Prefetches), "kind", "prefetch")
	const pre = "Prefetched blocks by outcome: used (a Get asked for it) or wasted (evicted before any did)."
	e.Counter("blockfs_pool_prefetched_blocks_total", pre, float64(p.PrefetchUsed), "outcome", "used")
	e.Counter("blockfs_pool_prefetched_blocks_total", pre, float64(p.PrefetchWasted), "outcome", "wasted")
	e.Counter("blockfs_pool_read_bytes_total", "Bytes the pool handed to readers (what they would have fetched without it).", float64(p.ReadBytes))
	e.Counter("blockfs_pool_fetched_bytes_total", "Bytes the pool fetched from the store.", float64(p.FetchBytes))
	e.Counter("blockfs_pool_fetch_errors_total", "Fetches that failed (counted once however many readers shared them).", float64(p.Errors))
	e.Counter("blockfs_pool_verify_failures_total", "Fetches whose bytes failed the size or SHA-256 check (never served).", float64(p.VerifyFailures))
	e.Counter("blockfs_pool_busy_total", "Gets refused because every buffer was in use and too many callers waited.", float64(p.Busy))
	e.Counter("blockfs_pool_evictions_total", "Cached blocks dropped to make room.", float64(p.Evictions))
	e.Counter("blockfs_pool_mapped_fetches_total", "Fetches served by mapping the store's block file in place instead of copying.", float64(p.Mapped))
	e.Counter("blockfs_pool_changed_blocks_total", "Mapped blocks whose file changed after they were verified (mapped and verified afresh).", float64(p.Changed))
	e.Gauge("blockfs_pool_buffers", "Buffers holding memory (cached, in use or being fetched).", float64(p.Buffers))
	e.Gauge("blockfs_pool_buffers_in_use", "Buffers referenced by a reader or a running fetch.", float64(p.BuffersInUse))
	e.Gauge("blockfs_pool_held_bytes", "Capacity of all buffers held; never above blockfs_pool_max_bytes.", float64(p.BytesHeld))
	e.Gauge("blockfs_pool_max_bytes", "The pool's configured memory bound.", float64(p.MaxBytes))
	e.Gauge("blockfs_pool_waiters", "Gets waiting for a buffer to become free.", float64(p.Waiters))
	e.Gauge("blockfs_pool_fetches_in_flight", "Fetches running now.", float64(p.InFlight))
	e.Gauge("blockfs_pool_hung_reads", "Store reads abandoned at their deadline that have not returned yet.", float64(p.Hung))
	e.Histogram("blockfs_pool_fetch_duration_seconds", "Time each store read of a block took (map or copy; hashing excluded).", p.FetchLatency)
}

func emitFuse(e metrics.Emit, f mount.FuseStats) {
	const ops = "FUSE requests the mount answered, by op."
	for op, v := range map[string]int64{"lookup": f.Lookups, "getattr": f.Getattrs, "readdir": f.Readdirs, "getxattr": f.Getxattrs, "open": f.Opens, "read": f.Reads, "readlink": f.Readlinks} {
		e.Counter("blockfs_fuse_operations_total", ops, float64(v), "op", op)
	}
	e.Counter("blockfs_fuse_read_bytes_total", "Bytes returned by FUSE reads.", float64(f.ReadBytes))
	e.Counter("blockfs_fuse_eio_errors_total", "FUSE requests answered with EIO (a block that could not be fetched or verified).", float64(f.Errors))
	e.Counter("blockfs_fuse_copied_reads_total", "Reads over several blocks copied block by block for want of free pool memory.", float64(f.CopiedReads))
	e.Counter("blockfs_fuse_readahead_blocks_total", "Blocks queued for readahead by sequential readers.", float64(f.Prefetches))
}

func emitMeta(e metrics.Emit, m volume.MetaStats) {
	e.Gauge("blockfs_meta_generation", "Generation of the store's metadata manifest the mount serves.", float64(m.Generation))
	e.Gauge("blockfs_meta_segments", "Metadata segments ingested.", float64(m.Segments))
	e.Counter("blockfs_meta_refreshes_total", "Metadata refreshes tried.", float64(m.Refreshes))
	e.Counter("blockfs_meta_refresh_changes_total", "Refreshes that found newly published metadata.", float64(m.Changes))
	e.Counter("blockfs_meta_refresh_errors_total", "Refreshes that failed (store unreachable, manifest gone or older).", float64(m.RefreshErrors))
	e.Gauge("blockfs_meta_last_refresh_timestamp_seconds", "Unix time of the last refresh that reached the store (0: none yet).", float64(m.LastRefreshNs)/1e9)
	e.Counter("blockfs_meta_published_blocks_total", "Metadata blocks this process published.", float64(m.PublishedBlocks))
	e.Counter("blockfs_meta_parts_fetched_total", "Metadata parts fetched from the store (a mount serving parts).", float64(m.PartsFetched))
	e.Gauge("blockfs_meta_parts_resident_bytes", "Bytes of metadata parts held decoded.", float64(m.PartsResident))
}

func emitHTTP(e metrics.Emit, h httpstore.ServerStats) {
	const reqs = "HTTP requests answered, by status class."
	for code, v := range map[string]int64{"2xx": h.Status2xx, "3xx": h.Status3xx, "4xx": h.Status4xx, "5xx": h.Status5xx} {
		e.Counter("blockfs_http_requests_total", reqs, float64(v), "code", code)
	}
	const routes = "HTTP requests received, by route."
	for route, v := range map[string]int64{
		"block_get": h.BlockGets, "block_head": h.BlockHeads, "block_put": h.BlockPuts, "block_delete": h.BlockDeletes,
		"list": h.Lists, "ref_get": h.RefGets, "ref_put": h.RefPuts, "stats": h.StatsGets, "health": h.HealthChecks, "other": h.Other,
	} {
		e.Counter("blockfs_http_route_requests_total", routes, float64(v), "route", route)
	}
	const refused = "HTTP requests refused, by reason: busy (503), unauthorized (401/403), bad (400, 405, 411, 413, 428)."
	e.Counter("blockfs_http_refused_requests_total", refused, float64(h.Busy503), "reason", "busy")
	e.Counter("blockfs_http_refused_requests_total", refused, float64(h.Unauthorized), "reason", "unauthorized")
	e.Counter("blockfs_http_refused_requests_total", refused, float64(h.BadRequests), "reason", "bad")
	e.Counter("blockfs_http_canceled_requests_total", "Clients that went away before their answer.", float64(h.Canceled))
	e.Counter("blockfs_http_response_bytes_total", "Response body bytes written.", float64(h.BytesOut))
	e.Counter("blockfs_http_request_bytes_total", "Request body bytes read (PUTs).", float64(h.BytesIn))
	e.Gauge("blockfs_http_requests_in_flight", "Requests being handled now.", float64(h.InFlight))
	down := 0.0
	if h.StoreDown {
		down = 1
	}
	e.Gauge("blockfs_http_store_down", "1 while the server's last telling store call failed (it answers refs from its last values).", down)
	e.Counter("blockfs_http_stale_ref_answers_total", "Ref reads answered flagged stale (the store failed, or the tier behind it said so).", float64(h.StaleRefs))
}

// exportCache exports the disk cache's counters, if there is a cache.
func exportCache(reg *metrics.Registry, store *storeurl.Stack) {
	if store.Cache == nil {
		return
	}
	reg.Export(func(e metrics.Emit) { emitCache(e, store.Cache.Stats()) })
}

func emitCache(e metrics.Emit, c diskcache.Stats) {
	e.Counter("blockfs_cache_hits_total", "Gets served from a cache file.", float64(c.Hits))
	e.Counter("blockfs_cache_hit_bytes_total", "Bytes served from cache files.", float64(c.HitBytes))
	e.Counter("blockfs_cache_misses_total", "Gets that went to the backend.", float64(c.Misses))
	e.Counter("blockfs_cache_inserts_total", "Blocks written to the cache.", float64(c.Inserts))
	e.Counter("blockfs_cache_evictions_total", "Blocks dropped from the cache to make room.", float64(c.Evictions))
	e.Counter("blockfs_cache_corrupt_dropped_total", "Cache files dropped as damaged (truncated, bad CRC, vanished).", float64(c.CorruptDropped))
	e.Counter("blockfs_cache_backend_errors_total", "Backend Gets behind the cache that failed.", float64(c.BackendErrors))
	e.Counter("blockfs_cache_skipped_total", "Verified blocks not cached: larger than the room that could be made.", float64(c.Skipped))
	const errs = "Cache file operations that failed, by op (the Get itself is still served)."
	e.Counter("blockfs_cache_file_errors_total", errs, float64(c.WriteErrors), "op", "write")
	e.Counter("blockfs_cache_file_errors_total", errs, float64(c.ReadErrors), "op", "read")
	e.Counter("blockfs_cache_file_errors_total", errs, float64(c.RemoveErrors), "op", "remove")
	e.Counter("blockfs_cache_ghost_hits_total", "Misses whose block was recently evicted (admitted straight to the main queue).", float64(c.GhostHits))
	e.Counter("blockfs_cache_promotions_total", "Blocks moved from the small queue to main (re-read while new).", float64(c.Promotions))
	e.Gauge("blockfs_cache_size_bytes", "Bytes of cache files (data and trailers, files being written included).", float64(c.Bytes))
	e.Gauge("blockfs_cache_max_bytes", "The cache's configured bound on blockfs_cache_size_bytes.", float64(c.MaxBytes))
	e.Gauge("blockfs_cache_entries", "Blocks in the cache.", float64(c.Entries))
}
