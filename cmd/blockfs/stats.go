package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/mount"

	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:    "stats",
		args:    "MOUNTPOINT|http://HOST:PORT",
		summary: "show what a running mount's (or server's) shared buffer pool is doing",
		help: `For a mount, reads its hidden ` + mount.StatsFileName + ` file, so no privileges
beyond reading the mount are needed; for a blockfs serve, asks its /v1/stats
(with $BLOCKFS_TOKEN if set). With --watch, prints one line of per-second
rates per interval in columns grouped by layer (the first line at once, with
the averages since start; a header every 20 lines); with --json --watch, one
JSON object per interval holding the rates and the cumulative counters.
docs/operations.md says what every field means.`,
		setup: setupStats,
	})
}

func setupStats(fl *pflag.FlagSet) runFunc {
	asJSON := fl.Bool("json", false, "print one JSON object (with --watch: one per interval and line)")
	watch := fl.Duration("watch", 0, "print rates every DURATION (e.g. 1s) until interrupted")
	caFile := fl.String("ca-file", "", "PEM roots to trust for an https:// server, besides the system's")
	return func(ctx context.Context, e env, args []string) error {
		if len(args) != 1 {
			return usagef("want MOUNTPOINT or a server URL, got %d arguments", len(args))
		}
		if *watch < 0 {
			return usagef("--watch must be positive")
		}
		tc, err := storeurl.ClientTLS(*caFile)
		if err != nil {
			return err
		}
		read := func() (statsView, error) { return readStats(ctx, args[0], tc) }
		if *watch == 0 {
			st, err := read()
			if err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(e.stdout).Encode(st)
			}
			printStats(e.stdout, st)
			return nil
		}
		return watchStats(ctx, e.stdout, read, *watch, *asJSON)
	}
}

// watchStats prints a line (or a JSON object) at once, with the averages
// since the target started, then one per interval until ctx ends.
func watchStats(ctx context.Context, out io.Writer, read func() (statsView, error), every time.Duration, asJSON bool) error {
	var prev statsView // zero: the first line covers the time since start
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 0; ; n++ {
		cur, err := read()
		if err != nil {
			return err
		}
		r := ratesBetween(prev, cur)
		if asJSON {
			if err := json.NewEncoder(out).Encode(watchRecord{Time: time.Now().UTC(), Rates: r, Stats: cur}); err != nil {
				return err
			}
		} else {
			if n%headerEvery == 0 {
				printHeader(out)
			}
			printRow(out, time.Now(), r)
		}
		prev = cur
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// statsView is what a mount or a server reports; a server has no fuse or
// meta members but an http one.
type statsView struct {
	mount.Stats
	HTTP *httpstore.ServerStats `json:"http,omitempty"`
}

func readStats(ctx context.Context, target string, tc *tls.Config) (statsView, error) {
	var st statsView
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		c, err := httpstore.Open(ctx, target, httpstore.ClientOptions{Token: os.Getenv("BLOCKFS_TOKEN"), TLS: tc, MaxAttempts: 2})
		if err != nil {
			return st, err
		}
		defer c.Close()
		b, err := c.ServerStats(ctx)
		if err != nil {
			return st, err
		}
		// A server that answers is healthy unless it says otherwise
		// (an older one does not say).
		st.Healthy = true
		if err := json.Unmarshal(b, &st); err != nil {
			return st, fmt.Errorf("%s: unreadable stats: %w", target, err)
		}
		st.Mountpoint = target
		return st, nil
	}
	b, err := os.ReadFile(filepath.Join(target, mount.StatsFileName))
	if errors.Is(err, syscall.ENOTCONN) {
		return st, mount.DeadMountError(target)
	}
	if errors.Is(err, iofs.ErrNotExist) {
		return st, fmt.Errorf("%s: not a blockfs mount (no %s)", target, mount.StatsFileName)
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: unreadable stats: %w", target, err)
	}
	return st, nil
}

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

func printStats(w io.Writer, s statsView) {
	p, f, m := s.Pool, s.Fuse, s.Meta
	health := "healthy"
	if !s.Healthy {
		health = "UNHEALTHY: " + s.Reason
	}
	served := ""
	if s.Kind == "mount" {
		served = fmt.Sprintf("  generation %d", m.Generation)
	}
	fmt.Fprintf(w, "blockfs %s %s  store %s%s  up %s  %s\n", s.Kind, s.Mountpoint, s.Store, served,
		time.Duration(s.UptimeNs).Round(time.Second), health)
	fmt.Fprintf(w, "pool   gets %d = hits %d (%.1f%%) + shared %d (%.1f%%) + misses %d (%.1f%%); busy %d\n",
		p.Gets, p.Hits, pct(p.Hits, p.Gets), p.Shared, pct(p.Shared, p.Gets), p.Misses, pct(p.Misses, p.Gets), p.Busy)
	fmt.Fprintf(w, "       fetches %d = demand %d + prefetch %d (used %d, wasted %d); %d mapped in place, %d in flight\n",
		p.Fetches, p.DemandFetches, p.Prefetches, p.PrefetchUsed, p.PrefetchWasted, p.Mapped, p.InFlight)
	fmt.Fprintf(w, "       read %s, fetched %s: %s\n", ibytes(p.ReadBytes), ibytes(p.FetchBytes), saved(p.ReadBytes, p.FetchBytes))
	fmt.Fprintf(w, "       fetch latency p50 %s p99 %s (since start)\n", dur(p.FetchLatency.P50Seconds), dur(p.FetchLatency.P99Seconds))
	fmt.Fprintf(w, "       buffers %d (%d in use), holding %s of %s, waiters %d, evictions %d\n",
		p.Buffers, p.BuffersInUse, ibytes(p.BytesHeld), ibytes(p.MaxBytes), p.Waiters, p.Evictions)
	fmt.Fprintf(w, "       errors %d, verify failures %d, hung %d, changed %d\n", p.Errors, p.VerifyFailures, p.Hung, p.Changed)
	if h := s.HTTP; h != nil {
		fmt.Fprintf(w, "http   requests %d (block gets %d, ref gets %d, puts %d), in flight %d, busy 503 %d, unauthorized %d, bad %d, out %s\n",
			h.Requests, h.BlockGets, h.RefGets, h.BlockPuts, h.InFlight, h.Busy503, h.Unauthorized, h.BadRequests, ibytes(h.BytesOut))
	}
	if c := s.Cache; c != nil {
		fmt.Fprintf(w, "cache  hits %d (%s), misses %d, holding %s of %s in %d blocks, evictions %d, corrupt dropped %d\n",
			c.Hits, ibytes(c.HitBytes), c.Misses, ibytes(c.Bytes), ibytes(c.MaxBytes), c.Entries, c.Evictions, c.CorruptDropped)
	}
	if s.Kind == "mount" {
		fmt.Fprintf(w, "fuse   reads %d (%s, %d copied for want of pool memory), latency p50 %s p99 %s; opens %d, lookups %d, getattrs %d, readdirs %d, getxattrs %d, errors %d\n",
			f.Reads, ibytes(f.ReadBytes), f.CopiedReads, dur(f.ReadLatency.P50Seconds), dur(f.ReadLatency.P99Seconds),
			f.Opens, f.Lookups, f.Getattrs, f.Readdirs, f.Getxattrs, f.Errors)
		last := "never"
		if m.LastRefreshNs > 0 {
			last = time.Since(time.Unix(0, m.LastRefreshNs)).Round(time.Second).String() + " ago"
		}
		// A mount serving parts ingests no segment: say what it holds.
		held := fmt.Sprintf("%d segments ingested", m.Segments)
		if m.PartsServed {
			held = fmt.Sprintf("served from parts (%d fetched, %s resident)", m.PartsFetched, ibytes(m.PartsResident))
		}
		fmt.Fprintf(w, "meta   generation %d, %s, refreshed %s (%d refreshes, %d with news, %d errors)\n",
			m.Generation, held, last, m.Refreshes, m.Changes, m.RefreshErrors)
	}
	if u := s.Process; u.RSSBytes > 0 {
		fmt.Fprintf(w, "proc   cpu %.1fs, rss %s, threads %d\n", u.CPUSeconds, ibytes(u.RSSBytes), u.Threads)
	}
}

// saved says what the pool saved the store: without it every Get would
// have been a fetch.
func saved(read, fetched int64) string {
	switch {
	case read == 0 && fetched == 0:
		return "nothing yet"
	case fetched <= read:
		return fmt.Sprintf("saved %s (the store sent %.2fx what readers got)", ibytes(read-fetched), float64(fetched)/float64(max(read, 1)))
	default:
		return fmt.Sprintf("fetched %s MORE than was read (%.2fx: prefetches wasted?)", ibytes(fetched-read), float64(fetched)/float64(max(read, 1)))
	}
}
