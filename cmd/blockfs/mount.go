package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
	"blockfs/blockstore/tier"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/metrics"
	"blockfs/internal/procs"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

func init() {
	register(&command{
		name:    "mount",
		args:    "MOUNTPOINT",
		summary: "serve a store read-only at MOUNTPOINT, in the foreground",
		help: `Every read goes through one shared buffer pool: however many processes read
the same block, the store is asked for it once. The mount runs until SIGINT,
SIGTERM, umount or fusermount3 -u, then exits 0 with nothing left mounted.
'blockfs stats MOUNTPOINT' shows what it is doing.

With --daemon it returns once the mount serves (exit 0) or failed (exit 1),
leaving the mount running in the background. Under systemd (Type=notify) it
reports READY=1, STATUS= and STOPPING=1.

As a mount helper: mount -t fuse.blockfs STORE MOUNTPOINT -o OPTIONS, or an
fstab line of type fuse.blockfs. Every flag is an option NAME=VALUE with
underscores for dashes (pool_size=4G, cache_dir=/var/cache/b, log_file=...;
allow_other, debug bare); ro, noauto, _netdev, nofail, x-systemd.* and the
other generic options are ignored, rw is refused. See docs/operations.md.

Files are served with the owners, modes, hard links and extended attributes
they were imported with (docs/fidelity.md); --uid, --gid, --umask,
--file-mode and --dir-mode (or -o uid=N,umask=077,...) override them.`,
		setup: setupMount,
	})
}

// mountFlags are the mount command's flags, parsed.
type mountFlags struct {
	sf                                  *storeFlags
	cf                                  *cacheFlags
	lf                                  *logFlags
	metaDir, at                         *string
	owners                              *ownerFlags
	poolSize                            *int64
	readahead                           *int
	allowOther, allowNonEmpty, debug    *bool
	daemon                              *bool
	fetchTimeout, refresh, cacheTimeout *time.Duration
	metricsAddr, cpuprofile             *string
	trace                               *string
	traceWindow                         *time.Duration
	siblings                            *int64
	balance                             *bool
	readdirplus                         *string
	pf                                  *peerFlags
}

func addMountFlags(fl *pflag.FlagSet) *mountFlags {
	f := &mountFlags{sf: addStoreFlags(fl)}
	f.metaDir = addMetaDirFlag(fl)
	f.at = addAtFlag(fl)
	f.cf = addCacheFlags(fl)
	f.poolSize = sizeFlag(fl, "pool-size", blockstore.DefaultMaxBytes, "memory for shared block buffers")
	f.readahead = fl.Int("readahead", mount.DefaultReadahead, "block fetches a sequential reader keeps in flight (0 disables)")
	f.trace = fl.String("trace", "", "a file in the tree (the interpreter, the job script): on its first open, prefetch the start-up trace published for its content, or record one and publish it (docs/performance.md)")
	f.traceWindow = fl.Duration("trace-window", mount.DefaultTraceWindow, "how long a --trace recording runs after the trigger opens")
	f.siblings = sizeFlag(fl, "prefetch-siblings", mount.DefaultSiblingPrefetch, "bytes of packs of a directory's files prefetched when it is listed or a packed file in it opened (0 disables)")
	f.readdirplus = fl.String("readdirplus", "auto", "listings carry each entry's attributes: auto (when the reader uses them, as ls -l does and find does not) or always (readers that open every listed file from other processes)")
	f.allowOther = fl.Bool("allow-other", false, "let users other than the mounting one read the mount")
	f.allowNonEmpty = fl.Bool("allow-non-empty", false, "mount over a directory that has files, hiding them")
	f.debug = fl.Bool("debug", false, "log every FUSE request (at log level debug)")
	f.fetchTimeout = fl.Duration("fetch-timeout", mount.DefaultFetchTimeout, "give a read EIO if its block cannot be fetched (retries included) within this")
	f.refresh = fl.Duration("refresh", mount.DefaultRefresh, "how often to pick up newly imported data (0 disables)")
	f.cacheTimeout = fl.Duration("cache-timeout", 0, "how long the kernel may cache names and attributes (default 24h: a refresh invalidates what it changes)")
	f.metricsAddr = fl.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics (\":PORT\" listens on loopback; say 0.0.0.0:PORT for every interface)")
	f.daemon = fl.Bool("daemon", false, "run in the background; return once the mount serves (exit 0) or failed (exit 1)")
	f.balance = fl.Bool("balance", false, "spread each file's blocks evenly over the read tier's first group (its serves must run with --peers)")
	f.pf = addPeerFlags(fl)
	f.owners = addOwnerFlags(fl)
	f.lf = addLogFlags(fl)
	f.cpuprofile = fl.String("cpuprofile", "", "write a CPU profile of the mount's life to this file")
	_ = fl.MarkHidden("cpuprofile")
	return f
}

// check validates everything that can be checked without I/O.
func (f *mountFlags) check(args []string) error {
	if len(args) != 1 {
		return usagef("want MOUNTPOINT, got %d arguments", len(args))
	}
	if *f.fetchTimeout <= 0 {
		return usagef("--fetch-timeout must be positive")
	}
	if err := f.pf.check(); err != nil {
		return err
	}
	if *f.refresh < 0 || *f.cacheTimeout < 0 {
		return usagef("--refresh and --cache-timeout must not be negative")
	}
	if *f.readahead < 0 {
		return usagef("--readahead must be >= 0")
	}
	if *f.readdirplus != "auto" && *f.readdirplus != "always" {
		return usagef("--readdirplus %q: want auto or always", *f.readdirplus)
	}
	if *f.poolSize < 1<<20 {
		return usagef("--pool-size %s is too small (at least 1MiB)", humanize.IBytes(uint64(*f.poolSize)))
	}
	if err := f.owners.apply(&mount.Options{}); err != nil {
		return err
	}
	return f.lf.check()
}

func setupMount(fl *pflag.FlagSet) runFunc {
	f := addMountFlags(fl)
	return func(ctx context.Context, e env, args []string) error {
		if err := f.check(args); err != nil {
			return err
		}
		spec, openOpts, err := openOptions(f.sf, f.cf)
		if err != nil {
			return err
		}
		// Check the mountpoint before opening anything, so that a typo fails fast.
		if _, err := mount.CheckMountpoint(args[0], *f.allowNonEmpty); err != nil {
			return err
		}
		n := newNotifier()
		if _, child := n.(*pipeNotifier); *f.daemon && !child {
			return daemonize(e.argv, *f.lf.file)
		}
		err = serveMount(ctx, e, f, spec, openOpts, args[0], n)
		if err != nil {
			n.fail(err)
		}
		return err
	}
}

// serveMount opens the volume, mounts it and serves until unmounted,
// telling n once it serves.
func serveMount(ctx context.Context, e env, f *mountFlags, spec string, openOpts storeurl.Options, mnt string, n notifier) error {
	logger, closeLog, err := f.lf.open(e.stderr, *f.debug)
	if err != nil {
		return err
	}
	defer closeLog()
	if *f.cpuprofile != "" {
		stop, err := startCPUProfile(*f.cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	procs.More()
	reg := metrics.New()
	if *f.metricsAddr != "" {
		openOpts.WrapBackend = reg.WrapStore
	}
	lease, err := mountLease(ctx, spec, openOpts, logger)
	if err != nil {
		return err
	}
	defer lease.release()
	peers, err := openPeerTier(ctx, *f.pf.peers, *f.pf.name, openOpts, openOpts.Token)
	if err != nil {
		return err
	}
	if peers != nil {
		defer peers.Close()
	}
	openOpts.WrapBackend = routeThrough(openOpts.WrapBackend, peers, *f.pf.name)
	vol, err := volume.Open(ctx, spec, volume.Options{Options: openOpts, MetaDir: *f.metaDir, At: *f.at, Lazy: true})
	if err != nil {
		return err
	}
	defer vol.Close()
	if err := setBalance(ctx, vol, *f.balance); err != nil {
		return err
	}
	lease.serve(ctx, vol)
	var observer mount.OpObserver
	if *f.metricsAddr != "" {
		observer = reg
	}
	mopts := mount.Options{
		Observer: observer,
		PoolSize: *f.poolSize, Readahead: zeroMeansOff(*f.readahead), AllowOther: *f.allowOther, Debug: *f.debug,
		AllowNonEmpty: *f.allowNonEmpty,
		CacheTimeout:  *f.cacheTimeout, Refresh: zeroMeansOff(*f.refresh), FetchTimeout: *f.fetchTimeout,
		Logger:       logger,
		TraceTrigger: *f.trace, TraceWindow: *f.traceWindow,
		SiblingPrefetch: *f.siblings,
		PlusAlways:      *f.readdirplus == "always",
	}
	if *f.siblings == 0 {
		mopts.SiblingPrefetch = -1
	}
	if err := f.owners.apply(&mopts); err != nil {
		return err
	}
	m, err := mount.Start(mnt, vol, mopts)
	if err != nil {
		return withFUSEHint(err)
	}
	stopExtras, err := startMountExtras(ctx, e, f, reg, m, vol, peers, openOpts.Token, logger)
	if err != nil {
		m.Unmount()
		m.Wait()
		return err
	}
	defer stopExtras()
	fmt.Fprintf(e.stderr, "blockfs mount: serving %s at %s (pool %s); Ctrl-C or umount to stop\n",
		vol.Spec, m.Mountpoint(), humanize.IBytes(uint64(*f.poolSize)))
	logger.Info("serving", "store", vol.Spec, "mountpoint", m.Mountpoint(), "generation", vol.MetaStats().Generation)
	n.ready(mountStatus(vol))
	stopReports := make(chan struct{})
	go reportGenerations(stopReports, vol, n, *f.refresh)
	followed := make(chan struct{})
	go func() { defer close(followed); lease.follow(stopReports, m.OldestServed) }()
	err = waitUnmounted(ctx, e, m, n)
	close(stopReports)
	<-followed // before the deferred release of the lease
	logger.Info("unmounted", "mountpoint", m.Mountpoint())
	return err
}

// withFUSEHint adds what an unprivileged user most often lacks to a failed
// mount: fusermount3 opens /dev/fuse as the user, and the error it leaves
// go-fuse ("fusermount exited with code 256") says nothing of it.
func withFUSEHint(err error) error {
	if os.Geteuid() == 0 {
		return err
	}
	if unix.Access("/dev/fuse", unix.R_OK|unix.W_OK) != nil {
		return fmt.Errorf("%w (/dev/fuse is not readable and writable by this user; see docs/operations.md, \"Mounting without root\")", err)
	}
	return err
}

// mountStatus is the one-line state a service manager shows.
func mountStatus(vol *volume.Volume) string {
	return fmt.Sprintf("serving %s generation %d", vol.Spec, vol.MetaStats().Generation)
}

// reportGenerations updates the notifier's status when a refresh brings a
// new generation, until the mount ends.
func reportGenerations(stop <-chan struct{}, vol *volume.Volume, n notifier, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := vol.MetaStats().Generation
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if g := vol.MetaStats().Generation; g != last {
			last = g
			n.status(mountStatus(vol))
		}
	}
}

// stopGrace bounds how long a signalled mount waits for the kernel to let
// go of it (readers still inside, reads still waiting for a hung store)
// before it exits anyway. The mountpoint is detached by then, so exiting
// leaves it clean; readers still in it get ENOTCONN.
const stopGrace = 5 * time.Second

// waitUnmounted returns when the mount is unmounted, by someone else or,
// once ctx ends (a signal), by us, within stopGrace.
func waitUnmounted(ctx context.Context, e env, m *mount.Mount, n notifier) error {
	done := make(chan struct{})
	go func() {
		m.Wait()
		close(done)
	}()
	select {
	case <-done:
		n.stopping()
		return nil
	case <-ctx.Done():
	}
	n.stopping()
	unmounted := make(chan error, 1)
	go func() { unmounted <- m.Unmount() }()
	grace, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	select {
	case err := <-unmounted:
		if err == nil {
			break
		}
		// Busy (a shell sits in it): detach now, the kernel finishes when
		// the last user leaves, and we still exit cleanly.
		if derr := syscall.Unmount(m.Mountpoint(), syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmounting %s: %w", m.Mountpoint(), err)
		}
	case <-grace.Done():
		_ = syscall.Unmount(m.Mountpoint(), syscall.MNT_DETACH)
	}
	select {
	case <-done:
	case <-grace.Done():
		fmt.Fprintf(e.stderr, "blockfs mount: %s detached; still busy after %v, exiting anyway\n", m.Mountpoint(), stopGrace)
	}
	return nil
}

// zeroMeansOff is the one translation between mount's flags and
// mount.Options: in --readahead and --refresh, 0 means off (as the help
// and README say), while in Options 0 means the default and a negative
// value means off.
func zeroMeansOff[T ~int | ~int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// setBalance turns on the read tier's placement of each opened file's
// blocks (tier.Store.SetBalance), which only a tier of serves with --peers
// may have: it is an error on any other store.
func setBalance(ctx context.Context, vol *volume.Volume, on bool) error {
	if !on {
		return nil
	}
	t, ok := blockstore.As[*tier.Store](vol.Store().Blocks)
	if !ok {
		return usagef("--balance needs a read tier of several serves as the store, not %s", vol.Spec)
	}
	if err := t.CheckForwarding(ctx); err != nil {
		return fmt.Errorf("--balance: %w", err)
	}
	t.SetBalance(true)
	return nil
}

// startMountExtras starts what a mount serves besides its files: metrics
// (--metrics) and its blocks to its peers (--serve).
func startMountExtras(ctx context.Context, e env, f *mountFlags, reg *metrics.Registry, m *mount.Mount, vol *volume.Volume, peers *tier.Store, token string, logger *slog.Logger) (stop func(), err error) {
	stop = func() {}
	if *f.metricsAddr != "" {
		exportMount(reg, m, vol)
		addr, err := reg.Serve(ctx, *f.metricsAddr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(e.stderr, "blockfs mount: metrics at http://%s/metrics\n", addr)
	}
	if peers != nil {
		return servePeers(ctx, *f.pf.serve, m, vol.Store().Blocks, peers, token, logger)
	}
	return stop, nil
}
