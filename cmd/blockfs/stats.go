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

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:    "stats",
		args:    "MOUNTPOINT|http://HOST:PORT",
		summary: "show what a running mount's (or server's) shared buffer pool is doing",
		help: `For a mount, reads its hidden ` + mount.StatsFileName + ` file, so no privileges
beyond reading the mount are needed; for a blockfs serve, asks its /v1/stats
(with $BLOCKFS_TOKEN if set). With --watch, prints per-interval rates until
interrupted.`,
		setup: setupStats,
	})
}

func setupStats(fl *pflag.FlagSet) runFunc {
	asJSON := fl.Bool("json", false, "print one JSON object (with --watch: one per line)")
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
		prev, err := readStats(ctx, args[0], tc)
		if err != nil {
			return err
		}
		out := e.stdout
		if *watch == 0 {
			if *asJSON {
				return json.NewEncoder(out).Encode(prev)
			}
			printStats(out, prev)
			return nil
		}
		t := time.NewTicker(*watch)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			cur, err := readStats(ctx, args[0], tc)
			if err != nil {
				return err
			}
			if *asJSON {
				if err := json.NewEncoder(out).Encode(cur); err != nil {
					return err
				}
			} else {
				printRates(out, prev, cur)
			}
			prev = cur
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

func ibytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

func printStats(w io.Writer, s statsView) {
	p, f := s.Pool, s.Fuse
	fmt.Fprintf(w, "blockfs %s %s  (store %s, up %s)\n", s.Kind, s.Mountpoint, s.Store, time.Duration(s.UptimeNs).Round(time.Second))
	fmt.Fprintf(w, "pool   gets %d: hits %d (%.1f%%), shared %d (%.1f%%), fetches %d (%s, %d mapped in place, %d in flight), prefetches %d\n",
		p.Gets, p.Hits, pct(p.Hits, p.Gets), p.Shared, pct(p.Shared, p.Gets), p.Fetches, ibytes(p.FetchBytes), p.Mapped, p.InFlight, p.Prefetches)
	fmt.Fprintf(w, "       buffers %d (%d in use), holding %s of %s, waiters %d, evictions %d\n",
		p.Buffers, p.BuffersInUse, ibytes(p.BytesHeld), ibytes(p.MaxBytes), p.Waiters, p.Evictions)
	fmt.Fprintf(w, "       errors %d, verify failures %d, busy %d\n", p.Errors, p.VerifyFailures, p.Busy)
	if h := s.HTTP; h != nil {
		fmt.Fprintf(w, "http   requests %d (block gets %d, ref gets %d, puts %d), in flight %d, busy 503 %d, unauthorized %d, bad %d, out %s\n",
			h.Requests, h.BlockGets, h.RefGets, h.BlockPuts, h.InFlight, h.Busy503, h.Unauthorized, h.BadRequests, ibytes(h.BytesOut))
	}
	if c := s.Cache; c != nil {
		fmt.Fprintf(w, "cache  hits %d (%s), misses %d, holding %s of %s in %d blocks, evictions %d, corrupt dropped %d\n",
			c.Hits, ibytes(c.HitBytes), c.Misses, ibytes(c.Bytes), ibytes(c.MaxBytes), c.Entries, c.Evictions, c.CorruptDropped)
	}
	if s.Kind != "mount" {
		return
	}
	fmt.Fprintf(w, "fuse   reads %d (%s, %d copied for want of pool memory), opens %d, lookups %d, getattrs %d, readdirs %d, readlinks %d, errors %d\n",
		f.Reads, ibytes(f.ReadBytes), f.CopiedReads, f.Opens, f.Lookups, f.Getattrs, f.Readdirs, f.Readlinks, f.Errors)
	m := s.Meta
	last := "never"
	if m.LastRefreshNs > 0 {
		last = time.Since(time.Unix(0, m.LastRefreshNs)).Round(time.Second).String() + " ago"
	}
	fmt.Fprintf(w, "meta   generation %d, %d segments, refreshed %s (%d refreshes, %d with news, %d errors)\n",
		m.Generation, m.Segments, last, m.Refreshes, m.Changes, m.RefreshErrors)
}

// printRates prints one line of per-second rates between two snapshots.
func printRates(w io.Writer, a, b statsView) {
	secs := max(float64(b.UptimeNs-a.UptimeNs)/1e9, 1e-9)
	rate := func(x, y int64) float64 { return float64(y-x) / secs }
	fmt.Fprintf(w, "%s  reads/s %.0f  read %s/s  gets/s %.0f  hits/s %.0f  shared/s %.0f  fetches/s %.0f  fetched %s/s  held %s  waiters %d  errors %d\n",
		time.Now().Format("15:04:05"), rate(a.Fuse.Reads, b.Fuse.Reads), ibytes(int64(rate(a.Fuse.ReadBytes, b.Fuse.ReadBytes))),
		rate(a.Pool.Gets, b.Pool.Gets), rate(a.Pool.Hits, b.Pool.Hits), rate(a.Pool.Shared, b.Pool.Shared),
		rate(a.Pool.Fetches, b.Pool.Fetches), ibytes(int64(rate(a.Pool.FetchBytes, b.Pool.FetchBytes))),
		ibytes(b.Pool.BytesHeld), b.Pool.Waiters, b.Pool.Errors+b.Fuse.Errors)
}
