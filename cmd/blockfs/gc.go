package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/gc"
	"blockfs/fs/volume"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name: "gc", args: "", summary: "delete blocks no retained snapshot reaches (safe while imports and mounts run)",
		help: `Retained: the current snapshot, every tagged one, the newest --keep-last,
those newer than --keep-within, and every snapshot a live mount's lease
names (and the later ones). Collection takes two runs: a run condemns what
is unreachable; a run after --grace deletes what is still unreachable,
unless a running import or catalog command that may reuse it holds it off.
Stale temp files of interrupted writes older than --grace are removed too.
--dry-run deletes nothing and prints the same report. No lock stops
imports or mounts; see docs/gc.md for why this is safe.`,
		setup: setupGC,
	})
}

func setupGC(fl *pflag.FlagSet) runFunc {
	sf := addStoreFlags(fl)
	metaDir := addMetaDirFlag(fl)
	dry := fl.Bool("dry-run", false, "delete nothing; print what a run would do")
	keepLast := fl.Int("keep-last", 10, "retain the newest N snapshots (at least 1: the current one)")
	keepWithin := fl.Duration("keep-within", 0, "retain the snapshots newer than this")
	grace := fl.Duration("grace", time.Hour, "how long condemned blocks and temp files wait before deletion")
	asJSON := fl.Bool("json", false, "print the report as JSON")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) != 0 {
			return usagef("want no arguments, got %d", len(args))
		}
		if *keepLast < 1 || *keepWithin < 0 || *grace < 0 {
			return usagef("--keep-last must be at least 1, --keep-within and --grace not negative")
		}
		cat, err := openCatalog(ctx, sf)
		if err != nil {
			return err
		}
		defer cat.Close()
		var done, total atomic.Int64
		var bar *progressBar
		opts := gc.Options{KeepLast: *keepLast, KeepWithin: *keepWithin, Grace: *grace, DryRun: *dry, MetaDir: *metaDir, Skew: leaseSkew(), SweepTTL: leaseTTL()}
		if !*asJSON && isTerminal(e.stdout) {
			opts.Progress = func(_ string, d, t int64) { done.Store(d); total.Store(t) }
			bar = startProgressOf(e.stdout, func(n int64) string { return fmt.Sprint(n) + " blocks" }, func() (int64, int64) { return done.Load(), total.Load() })
		}
		rep, err := gc.New(cat, opts).Run(ctx)
		bar.stop()
		if errors.Is(err, httpstore.ErrUnauthorized) {
			return fmt.Errorf("gc lists, writes its state and deletes blocks, which a blockfs serve allows only with its token (--store-token-file or $BLOCKFS_TOKEN): %w", err)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(rep)
		}
		printGCReport(e.stdout, rep)
		return nil
	}
}

func printGCReport(w io.Writer, r *gc.Report) {
	c := func(n gc.Count) string {
		return fmt.Sprintf("%d blocks (%s)", n.Blocks, humanize.IBytes(uint64(n.Bytes)))
	}
	verb := "freed"
	if r.DryRun {
		verb = "would free"
	}
	fmt.Fprintf(w, "%s %s; kept %s; live %s in %d retained snapshots\n", verb, c(r.Freed), c(r.Kept), c(r.Live), len(r.Retained))
	if r.Condemned.Blocks > 0 {
		fmt.Fprintf(w, "condemned %s: deleted by a gc run after %s if still unreachable\n", c(r.Condemned), r.SweepAfter.Local().Format(time.RFC3339))
	} else if r.Unreachable.Blocks > 0 {
		fmt.Fprintf(w, "unreachable %s\n", c(r.Unreachable))
	}
	if r.Deferred != "" {
		fmt.Fprintf(w, "deletion deferred: %s\n", r.Deferred)
	}
	if r.Temps.Blocks > 0 {
		fmt.Fprintf(w, "temp files of interrupted writes: %d removed (%s)\n", r.Temps.Blocks, humanize.IBytes(uint64(r.Temps.Bytes)))
	}
}

// leaseTTL is how long a lease lasts unrenewed: $BLOCKFS_LEASE_TTL (tests
// and operators who want a dead mount forgotten sooner), else 5 minutes.
func leaseTTL() time.Duration { return envDuration("BLOCKFS_LEASE_TTL", 5*time.Minute) }

// leaseSkew is the clock skew allowed between hosts ($BLOCKFS_CLOCK_SKEW).
func leaseSkew() time.Duration { return envDuration("BLOCKFS_CLOCK_SKEW", gc.DefaultSkew) }

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// acquireLease registers a gc lease on the store behind blocks; a store
// without refs (none can be collected then) gets none.
func acquireLease(ctx context.Context, blocks blockstore.Store, opts gc.LeaseOptions) (*gc.Held, error) {
	rs, ok := blockstore.As[blockstore.RefStore](blocks)
	if !ok {
		return nil, nil
	}
	opts.TTL, opts.Skew = leaseTTL(), leaseSkew()
	h, err := gc.Acquire(ctx, blocks, rs, opts)
	if err != nil {
		return nil, fmt.Errorf("registering the gc lease: %w", err)
	}
	return h, nil
}

// catalogLease holds off collection of old metadata while a catalog
// command (tag, rollback, repair) references it.
func catalogLease(ctx context.Context, cat *volume.Catalog) (func(), error) {
	h, err := acquireLease(ctx, cat.Blocks(), gc.LeaseOptions{Kind: gc.KindCatalog, Reusing: true, AvoidSweep: true})
	if err != nil || h == nil {
		return func() {}, err
	}
	return func() { h.Release(context.WithoutCancel(ctx)) }, nil
}

// heldMount is a mount's gc lease: it names the snapshot the mount began
// serving, which the collector then keeps with every later one. It does
// not advance while the mount runs: handles opened on older versions are
// not tracked yet, so keeping every snapshot since the mount began is the
// safe choice (a remount lets them go).
type heldMount struct {
	cat    *volume.Catalog
	held   *gc.Held
	logger *slog.Logger
	mu     sync.Mutex
	vol    *volume.Volume
	gen    uint64
	man    []blockstore.Locator
}

// mountLease registers the lease before the volume is opened, so that the
// snapshot the volume then reads is one the collector sees protected.
func mountLease(ctx context.Context, spec string, opts storeurl.Options, logger *slog.Logger) (*heldMount, error) {
	// The lease is refs only, and the volume opened next takes the disk
	// cache, which one process may hold once: the catalog goes without.
	opts.CacheDir, opts.CacheSize = "", 0
	cat, err := volume.OpenCatalog(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	hm := &heldMount{cat: cat, logger: logger}
	hm.held, err = acquireLease(ctx, cat.Blocks(), gc.LeaseOptions{Kind: gc.KindMount, AvoidSweep: true, Reacquire: true, OnReacquire: hm.reacquired})
	if err != nil {
		// A read-only client (a serve store without the token) cannot
		// write refs: it mounts unprotected, and a collected block reads
		// as EIO (never wrong bytes), rather than not mounting at all.
		logger.Warn("mounting without a gc lease: gc may collect old snapshots this mount serves", "err", err)
		hm.held = nil
	}
	return hm, nil
}

// serve names vol's snapshot in the lease.
func (hm *heldMount) serve(ctx context.Context, vol *volume.Volume) {
	hm.mu.Lock()
	hm.vol, hm.gen = vol, vol.MetaStats().Generation
	if at := vol.At(); at != nil {
		hm.gen, hm.man = at.Generation, at.Manifest
	}
	hm.mu.Unlock()
	hm.name(ctx)
}

func (hm *heldMount) name(ctx context.Context) {
	if hm.held == nil {
		return
	}
	hm.mu.Lock()
	gen, man := hm.gen, hm.man
	hm.mu.Unlock()
	if err := hm.held.SetSnapshot(ctx, gen, man); err != nil {
		hm.logger.Error("gc lease: naming the snapshot served", "err", err)
	}
}

// reacquired runs when the lease had expired (the mount was cut off from
// the store): blocks it served may have been collected, so it refreshes
// (reads of a collected block fail with EIO; the pool's hash check means
// never with wrong bytes) and names its snapshot again.
func (hm *heldMount) reacquired() {
	hm.mu.Lock()
	vol := hm.vol
	hm.mu.Unlock()
	hm.logger.Warn("gc lease had expired; registered anew and refreshing (files of collected snapshots may read as EIO)")
	if vol != nil {
		if _, err := vol.Refresh(context.Background()); err != nil {
			hm.logger.Error("refresh after the gc lease expired", "err", err)
		}
	}
	hm.name(context.Background())
}

func (hm *heldMount) release() {
	if hm.held != nil {
		hm.held.Release(context.Background())
	}
	hm.cat.Close()
}
