// Package mount serves a volume's tree read-only through FUSE (go-fuse's
// raw protocol API, raw.go).
// Every read goes through one blockstore.Pool shared by the whole mount, so
// however many processes read a block, the store is asked for it once;
// sequential readers get readahead (readahead.go). The mount's counters are
// readable by anyone who can read the mount, from a hidden file at its root
// (statsfile.go).
package mount

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/procs"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Defaults for zero Options fields (the pool's size defaults to
// blockstore.DefaultMaxBytes). In Options, 0 always means the default and a
// negative value means off.
const (
	DefaultReadahead    = 32
	DefaultFetchTimeout = 2 * time.Minute
	DefaultRefresh      = 30 * time.Second
	DefaultCacheTimeout = 24 * time.Hour
)

// Options tune a mount; the zero value is sensible.
type Options struct {
	PoolSize int64 // bytes of block buffers shared by all reads (default blockstore.DefaultMaxBytes)
	// Readahead is how many prefetches a sequential reader keeps in
	// flight (default DefaultReadahead; <0 disables). Each one that
	// finishes starts the next, up to 2*Readahead blocks past the reader
	// and never more than a quarter of the pool ahead of it. Over a store
	// with long round trips and bounded per-request throughput, one block
	// at a time caps a reader at one block per round trip; several in
	// flight overlap them (docs/performance.md has the measurements).
	Readahead int
	// SiblingPrefetch bounds the bytes of packs prefetched when a
	// directory is listed or a packed file in it opened (see siblings.go;
	// default DefaultSiblingPrefetch, at most a quarter of the pool; <0
	// disables).
	SiblingPrefetch int64
	// TraceTrigger, a path in the tree, makes the mount replay the
	// published start-up trace of that file's content when it is first
	// opened, or record and publish one if there is none (trace.go), for
	// TraceWindow (default DefaultTraceWindow).
	TraceTrigger string
	TraceWindow  time.Duration
	AllowOther   bool // let other users read the mount
	// AllowNonEmpty mounts over a directory that has entries, hiding
	// them; by default that is refused.
	AllowNonEmpty bool
	// FetchTimeout bounds one block fetch, retries included: past it the
	// read fails with EIO instead of hanging (default DefaultFetchTimeout;
	// <0 none).
	FetchTimeout time.Duration
	Debug        bool // log every FUSE request
	// Refresh is how often the mount looks for newly published metadata
	// (default DefaultRefresh; <0 disables). Files already open keep
	// reading the version they opened.
	Refresh time.Duration
	// CacheTimeout is how long the kernel may cache names, attributes and
	// listings (default DefaultCacheTimeout). It can be long: the tree does
	// not change between refreshes, and a refresh invalidates exactly the
	// entries and listings it changed (invalidate.go). A file's data never
	// changes under one inode, so its page cache is kept regardless.
	CacheTimeout time.Duration
	// PlusAlways hands the kernel every listed entry's attributes
	// (READDIRPLUS, which costs the kernel an inode per entry), as for a
	// reader that will stat or open all of them from another process. By
	// default the kernel's adaptive mode decides: a listing's first entries
	// come with attributes, the rest too only if the reader looked at
	// those (ls -l, du), not for a walk of names (find, os.walk); see
	// dirhandle.go.
	PlusAlways bool
	// Logger gets errors worth an operator's eye (default: text on
	// stderr); failed reads carry the block as logx.DedupKey ("block"), so
	// a rate-limiting handler can fold repeats of one failure.
	Logger *slog.Logger

	// Owner and permission overrides, in the style of rclone and gcsfuse:
	// UID and GID (nil: as stored) replace every node's owner; FileMode and
	// DirMode (0: as stored) replace the permission bits of files and
	// directories; Umask then clears bits of both. Useful when the users
	// of a compute node are not those of the machine that imported.
	UID, GID          *uint32
	FileMode, DirMode uint32
	Umask             uint32

	// Observer, if set, receives the duration of every FUSE operation.
	Observer OpObserver

	// afterRefresh, for tests, is called after every background refresh.
	afterRefresh func(changed bool, err error)
}

// maxRead is the largest FUSE read we ask the kernel for: big reads mean
// fewer round trips through the kernel for large sequential files.
const maxRead = 1 << 20

// Mount is a running FUSE mount of a Volume.
type Mount struct {
	vol        *volume.Volume
	pool       *blockstore.Pool
	opts       Options
	server     *fuse.Server
	mountpoint string
	started    time.Time
	counters   fuseCounters
	stop       chan struct{} // ends the refresh loop
	stopOnce   sync.Once
	refreshed  sync.WaitGroup

	badMu   sync.Mutex
	badSeen map[string]struct{} // bad entries already logged (see badEntry)

	usageMu  sync.Mutex // one walk at a time (see usage)
	usageVal usage
	usageGen uint64
	usageOK  bool

	nodes   *nodeTable    // what the kernel holds (nodetable.go), shared with the views
	handles *handles      // open files and directories, shared with the views
	inval   invalidations // what refreshes told the kernel to drop (see invalidate.go)
	// namesOnly: the listings the kernel holds without attributes
	// (listattrs.go); the main mount's, for it and its views.
	namesOnly namesOnly

	served servedGens // open handles per generation (served.go)

	packs packIndex // the packs of directories, for prefetchSiblings
	trace tracer    // the trigger's trace, recorded or replayed (trace.go)

	snaps snapshots // the tags served under /.blockfs/snapshots (snapshots.go)
	// A snapshot view's: what its inode numbers hash first ("" for the
	// main tree).
	idPrefix string
}

// Start mounts vol at mountpoint and starts answering the kernel. It
// returns once the mount is ready; Wait blocks until it is unmounted.
func Start(mountpoint string, vol *volume.Volume, opts Options) (*Mount, error) {
	abs, err := CheckMountpoint(mountpoint, opts.AllowNonEmpty)
	if err != nil {
		return nil, err
	}
	// Once mounted, a root the kernel cannot get leaves a mountpoint that
	// answers nothing: find out first.
	if err := checkRoot(vol); err != nil {
		return nil, err
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = blockstore.DefaultMaxBytes
	}
	if opts.Readahead == 0 {
		opts.Readahead = DefaultReadahead
	}
	if opts.FetchTimeout == 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.TraceWindow <= 0 {
		opts.TraceWindow = DefaultTraceWindow
	}
	if opts.SiblingPrefetch == 0 {
		opts.SiblingPrefetch = DefaultSiblingPrefetch
	}
	if opts.Refresh == 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.CacheTimeout <= 0 {
		opts.CacheTimeout = DefaultCacheTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	m := &Mount{
		vol: vol, opts: opts, mountpoint: abs, started: time.Now(),
		stop: make(chan struct{}), badSeen: map[string]struct{}{},
		nodes: newNodeTable(), handles: &handles{},
		pool: blockstore.NewPool(vol.Blocks, blockstore.PoolConfig{
			MaxBytes: opts.PoolSize,
			// Kernel requests must not fail because many wait: they queue.
			MaxWaiters:   1 << 20,
			MaxPrefetch:  max(8, 2*opts.Readahead),
			FetchTimeout: max(opts.FetchTimeout, 0),
		}),
	}
	server, err := m.serve(abs)
	if err != nil {
		m.pool.Close()
		return nil, fmt.Errorf("mounting %s at %s: %w", vol.Spec, abs, err)
	}
	m.server = server
	TuneReadahead(abs)
	if opts.Refresh > 0 {
		m.refreshed.Add(1)
		go m.refreshLoop()
	}
	return m, nil
}

// checkRoot fails unless the volume's root is a directory that decodes.
func checkRoot(vol *volume.Volume) error {
	root, err := vol.Tree.Lookup("/")
	if err != nil {
		return fmt.Errorf("store %s: cannot serve its root: %w", vol.Spec, err)
	}
	if root.Kind != tree.KindDir {
		return fmt.Errorf("store %s: cannot serve its root: it is a %v, not a directory", vol.Spec, root.Kind)
	}
	return nil
}

// serve mounts the file system at abs and starts answering the kernel. If
// the mount does not come up, it leaves nothing mounted.
func (m *Mount) serve(abs string) (*fuse.Server, error) {
	opts := m.opts
	// Entry, attribute and negative timeouts are set per reply (dir.go):
	// the cache timeout for the tree, shorter for the mount's own nodes.
	server, err := fuse.NewServer(newRawFS(m), abs, &fuse.MountOptions{
		FsName:     "blockfs:" + m.vol.Spec,
		Name:       "blockfs",
		AllowOther: opts.AllowOther,
		Debug:      opts.Debug,
		// The FUSE trace of Debug goes where the operator's logs go.
		Logger:      slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		DirectMount: true,
		// Read-only at the mount level too, so mount(8) and mountinfo say ro.
		DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
		MaxWrite:         maxRead,
		MaxReadAhead:     maxRead,
		Options:          []string{"ro", "default_permissions"},
		DisableSplice:    true, // results are pool buffers or copies, never file descriptors
		// No POSIX ACL support (CAP_POSIX_ACL off): imports do not keep
		// ACLs, permissions are the mode bits, and the ACL names answer
		// EOPNOTSUPP (attr.go), which ls caches for the whole mount;
		// with the capability the kernel would ask for each inode's ACL.
		ExtraCapabilities: readdirplusAuto(opts.PlusAlways),
	})
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		// Mounted, but not answering as it should: take it down again
		// rather than leave a dead mountpoint behind.
		if uerr := server.Unmount(); uerr != nil {
			_ = syscall.Unmount(abs, syscall.MNT_DETACH)
		}
		return nil, err
	}
	return server, nil
}

// refreshLoop ingests newly published metadata every Refresh. A store that
// cannot be reached leaves the mount serving what it has; the failure is
// logged and counted.
func (m *Mount) refreshLoop() {
	defer m.refreshed.Done()
	t := time.NewTicker(m.opts.Refresh)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(m.opts.Refresh, time.Minute))
		pending := m.newPendingInval()
		changed, err := m.vol.RefreshNotify(ctx, pending.add)
		cancel()
		pending.apply()
		if err != nil {
			m.opts.Logger.Warn("refreshing metadata failed", "err", err)
		}
		if m.opts.afterRefresh != nil {
			m.opts.afterRefresh(changed, err)
		}
	}
}

// OpObserver receives the duration and outcome of FUSE operations (for
// Prometheus histograms); it must be cheap and safe for concurrent use.
type OpObserver interface {
	ObserveOp(op string, d time.Duration, failed bool)
}

// timer starts timing an operation if anyone observes; use as
// `defer m.timer()("read", &errno)`.
func (m *Mount) timer() func(op string, errno *syscall.Errno) {
	if m.opts.Observer == nil {
		return func(string, *syscall.Errno) {}
	}
	start := time.Now()
	return func(op string, errno *syscall.Errno) {
		m.opts.Observer.ObserveOp(op, time.Since(start), *errno != 0)
	}
}

// Pool is the mount's shared buffer pool.
func (m *Mount) Pool() *blockstore.Pool { return m.pool }

// Mountpoint is where the mount is, as an absolute path.
func (m *Mount) Mountpoint() string { return m.mountpoint }

// Wait blocks until the file system is unmounted (by Unmount, umount or
// fusermount -u).
func (m *Mount) Wait() {
	m.server.Wait()
	m.stopOnce.Do(func() { close(m.stop) })
	m.refreshed.Wait()
	m.closeViews()
	m.pool.Close()
}

// Unmount detaches the mount; Wait returns afterwards.
func (m *Mount) Unmount() error {
	m.FinishTrace() // a recording cut short still tells the next node something
	return m.server.Unmount()
}

// Stats snapshots the mount's counters.
func (m *Mount) Stats() Stats {
	st := Stats{
		Kind: "mount", Store: m.vol.Spec, Mountpoint: m.mountpoint,
		UptimeNs: int64(time.Since(m.started)),
		Pool:     m.pool.Stats(),
		Fuse:     m.fuseStats(),
		Meta:     m.vol.MetaStats(),
		Backend:  m.vol.Store().BackendStats(),
	}
	st.Healthy, st.Reason = st.Meta.LastError == "", st.Meta.LastError
	if st.Reason != "" {
		st.Reason = "refreshing metadata: " + st.Reason
	} else {
		// Refreshes succeed against a read tier that answers from its
		// last value while its own store is down: only the backend can
		// tell.
		st.Healthy, st.Reason = blockstore.Health(m.vol.Store().Blocks)
	}
	st.Process, _ = procs.Self() // zero where /proc is not mounted
	if c := m.vol.Store().Cache; c != nil {
		cs := c.Stats()
		st.Cache = &cs
	}
	return st
}
