package mount

import (
	"sync/atomic"

	"blockfs/blockstore"
	"blockfs/blockstore/diskcache"
	"blockfs/fs/volume"
	"blockfs/internal/latency"
	"blockfs/internal/procs"
)

// StatsFileName is the hidden, read-only file at the root of every mount
// that holds the mount's Stats as JSON. Reading a file needs no privileges
// beyond those to read the mount, unlike a control socket owned by root; it is
// left out of directory listings and shadows a stored file of the same name.
const StatsFileName = ".blockfs-stats"

// Stats is what `blockfs stats` shows: the shared pool's counters and the
// FUSE operations that fed it. Field names are a stable contract for scripts.
type Stats struct {
	Kind       string `json:"kind"` // "mount"
	Store      string `json:"store"`
	Mountpoint string `json:"mountpoint,omitempty"`
	UptimeNs   int64  `json:"uptime_ns"`
	// Healthy is false while the store cannot be reached or no longer
	// holds the metadata this mount serves (Reason says which); the mount
	// keeps serving what it has meanwhile.
	Healthy bool                 `json:"healthy"`
	Reason  string               `json:"reason,omitempty"`
	Process procs.Usage          `json:"process"`
	Pool    blockstore.PoolStats `json:"pool"`
	Fuse    FuseStats            `json:"fuse"`
	Meta    volume.MetaStats     `json:"meta"`
	Cache   *diskcache.Stats     `json:"cache,omitempty"`   // with --cache-dir
	Backend any                  `json:"backend,omitempty"` // store requests (S3, HTTP)
}

// FuseStats count kernel requests the mount answered.
type FuseStats struct {
	Lookups    int64 `json:"lookups"`
	Getattrs   int64 `json:"getattrs"`
	Readdirs   int64 `json:"readdirs"`
	Opens      int64 `json:"opens"`
	Reads      int64 `json:"reads"`
	ReadBytes  int64 `json:"read_bytes"`
	Readlinks  int64 `json:"readlinks"`
	Prefetches int64 `json:"prefetches"` // blocks queued for readahead
	Errors     int64 `json:"errors"`     // requests answered with EIO
	// CopiedReads are reads over several blocks that were copied block by
	// block because the pool had no memory free to hold them all at once:
	// many of them mean the pool is small for the load.
	CopiedReads int64 `json:"copied_reads"`
	// Interrupts are reads the kernel interrupted (the reader got a
	// signal) while they waited for a block; they go on to the end,
	// since a read(2) of a regular file must not fail with EINTR.
	Interrupts int64 `json:"interrupts"`
	// KilledReads are interrupted reads whose reader was being killed:
	// answered at once (EINTR it never sees) instead of after the fetch,
	// so that the process can exit.
	KilledReads int64 `json:"killed_reads"`
	// BadEntries are directory entries that were left out of listings
	// and fail on their own because they cannot be served (a name no
	// kernel accepts, a node that does not decode), each counted once.
	BadEntries int64 `json:"bad_entries"`
	// ReadLatency times FUSE reads from the kernel's request to the reply
	// (a pool hit, or the wait for a fetch).
	ReadLatency latency.Snapshot `json:"read_latency"`
	// Getxattrs are GETXATTR requests (attributes by name, ls -l's
	// probes for labels and ACLs included).
	Getxattrs int64 `json:"getxattrs"`
	// PlusEntries are directory entries handed to the kernel with their
	// attributes by READDIRPLUS, each sparing a LOOKUP.
	PlusEntries int64 `json:"plus_entries"`
	// RelistedWithAttrs are listings the kernel held as names only
	// (a walk's) that it was told to drop when a reader looked up their
	// files, so that it reads them again with attributes.
	RelistedWithAttrs int64 `json:"relisted_with_attrs"`
	// Invalidated entries (names; deleted ones also told to inotify) and
	// listings the kernel was told to drop because a refresh changed
	// them.
	InvalEntries  int64 `json:"inval_entries"`
	InvalDeletes  int64 `json:"inval_deletes"`
	InvalListings int64 `json:"inval_listings"`
	// NodesHeld is how many inodes the kernel holds of the mount (each a
	// node table record): it falls back when the kernel forgets them.
	NodesHeld int64 `json:"nodes_held"`
}

// fuseCounters are the live, lock-free counters behind FuseStats.
type fuseCounters struct {
	lookups, getattrs, readdirs, opens, reads, readBytes               atomic.Int64
	readlinks, prefetches, errors, copiedReads, interrupts, badEntries atomic.Int64
	readLatency                                                        latency.Histogram
	plusEntries, getxattrs, killedReads                                atomic.Int64
}

func (c *fuseCounters) snapshot() FuseStats {
	return FuseStats{
		Lookups: c.lookups.Load(), Getattrs: c.getattrs.Load(), Readdirs: c.readdirs.Load(),
		Opens: c.opens.Load(), Reads: c.reads.Load(), ReadBytes: c.readBytes.Load(),
		Readlinks: c.readlinks.Load(), Prefetches: c.prefetches.Load(), Errors: c.errors.Load(),
		CopiedReads: c.copiedReads.Load(), Interrupts: c.interrupts.Load(),
		BadEntries: c.badEntries.Load(), PlusEntries: c.plusEntries.Load(), Getxattrs: c.getxattrs.Load(), KilledReads: c.killedReads.Load(),
		ReadLatency: c.readLatency.Snapshot(),
	}
}
