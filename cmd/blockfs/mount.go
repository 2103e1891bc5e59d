package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"syscall"

	"blockfs/blockstore"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/metrics"
	"blockfs/internal/procs"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
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

Files are served with the owners, modes, hard links and extended attributes
they were imported with (docs/fidelity.md); --uid, --gid, --umask,
--file-mode and --dir-mode (or -o uid=N,umask=077,...) override them.`,
		setup: setupMount,
	})
}

func setupMount(fl *pflag.FlagSet) runFunc {
	sf := addStoreFlags(fl)
	cf := addCacheFlags(fl)
	poolSize := sizeFlag(fl, "pool-size", blockstore.DefaultMaxBytes, "memory for shared block buffers")
	readahead := fl.Int("readahead", mount.DefaultReadahead, "block fetches a sequential reader keeps in flight (0 disables)")
	allowOther := fl.Bool("allow-other", false, "let users other than the mounting one read the mount")
	debug := fl.Bool("debug", false, "log every FUSE request")
	fetchTimeout := fl.Duration("fetch-timeout", mount.DefaultFetchTimeout, "give a read EIO if its block cannot be fetched (retries included) within this")
	refresh := fl.Duration("refresh", mount.DefaultRefresh, "how often to pick up newly imported data (0 disables)")
	cacheTimeout := fl.Duration("cache-timeout", 0, "how long the kernel may cache names and attributes (default: the refresh interval, or 1h)")
	metricsAddr := fl.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics")
	owners := addOwnerFlags(fl)
	cpuprofile := fl.String("cpuprofile", "", "write a CPU profile of the mount's life to this file")
	_ = fl.MarkHidden("cpuprofile")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) != 1 {
			return usagef("want MOUNTPOINT, got %d arguments", len(args))
		}
		spec, openOpts, err := openOptions(sf, cf)
		if err != nil {
			return err
		}
		if *fetchTimeout <= 0 {
			return usagef("--fetch-timeout must be positive")
		}
		if *refresh < 0 || *cacheTimeout < 0 {
			return usagef("--refresh and --cache-timeout must not be negative")
		}
		if *readahead < 0 {
			return usagef("--readahead must be >= 0")
		}
		if *poolSize < 1<<20 {
			return usagef("--pool-size %s is too small (at least 1MiB)", humanize.IBytes(uint64(*poolSize)))
		}
		if err := owners.apply(&mount.Options{}); err != nil {
			return err
		}
		// Check the mountpoint before opening anything, so that a typo fails fast.
		if _, err := mount.CheckMountpoint(args[0]); err != nil {
			return err
		}
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		procs.More()
		reg := metrics.New()
		if *metricsAddr != "" {
			openOpts.WrapBackend = reg.WrapStore
		}
		vol, err := volume.Open(ctx, spec, volume.Options{Options: openOpts})
		if err != nil {
			return err
		}
		defer vol.Close()
		var observer mount.OpObserver
		if *metricsAddr != "" {
			observer = reg
		}
		mopts := mount.Options{
			Observer: observer,
			PoolSize: *poolSize, Readahead: zeroMeansOff(*readahead), AllowOther: *allowOther, Debug: *debug,
			CacheTimeout: *cacheTimeout, Refresh: zeroMeansOff(*refresh), FetchTimeout: *fetchTimeout,
			Logger: log.New(e.stderr, "blockfs mount: ", log.LstdFlags),
		}
		if err := owners.apply(&mopts); err != nil {
			return err
		}
		m, err := mount.Start(args[0], vol, mopts)
		if err != nil {
			return err
		}
		if *metricsAddr != "" {
			exportMount(reg, m, vol)
			addr, err := reg.Serve(ctx, *metricsAddr)
			if err != nil {
				m.Unmount()
				m.Wait()
				return err
			}
			fmt.Fprintf(e.stderr, "blockfs mount: metrics at http://%s/metrics\n", addr)
		}
		fmt.Fprintf(e.stderr, "blockfs mount: serving %s at %s (pool %s); Ctrl-C or umount to stop\n",
			vol.Spec, m.Mountpoint(), humanize.IBytes(uint64(*poolSize)))
		return waitUnmounted(ctx, m)
	}
}

// exportMount exports a mount's counters as Prometheus metrics.
func exportMount(reg *metrics.Registry, m *mount.Mount, vol *volume.Volume) {
	reg.Snapshot("pool", poolGauges, func() map[string]int64 { return metrics.Fields(m.Pool().Stats()) })
	reg.Snapshot("fuse", nil, func() map[string]int64 { return metrics.Fields(m.Stats().Fuse) })
	reg.Snapshot("meta", map[string]bool{"generation": true, "segments": true, "last_refresh_unix_ns": true},
		func() map[string]int64 { return metrics.Fields(vol.MetaStats()) })
	watchCache(reg, vol.Store())
}

// waitUnmounted returns when the mount is unmounted, by someone else or,
// once ctx ends (a signal), by us.
func waitUnmounted(ctx context.Context, m *mount.Mount) error {
	done := make(chan struct{})
	go func() {
		m.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	if err := m.Unmount(); err != nil {
		// Busy (a shell sits in it): detach now, the kernel finishes when
		// the last user leaves, and we still exit cleanly.
		if derr := syscall.Unmount(m.Mountpoint(), syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmounting %s: %w", m.Mountpoint(), err)
		}
	}
	<-done
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
