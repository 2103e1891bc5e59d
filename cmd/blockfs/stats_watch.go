package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// headerEvery is how many --watch lines go between headers: about a
// screen, so the column names are always in view.
const headerEvery = 20

// rates are per-second rates between two snapshots, and the latency
// percentiles of the operations in between.
type rates struct {
	IntervalSeconds float64 `json:"interval_seconds"`

	FuseReads         float64 `json:"fuse_reads"`
	FuseReadBytes     float64 `json:"fuse_read_bytes"`
	FuseReadP50       float64 `json:"fuse_read_p50_seconds"`
	FuseReadP99       float64 `json:"fuse_read_p99_seconds"`
	FuseErrors        float64 `json:"fuse_errors"`
	Gets              float64 `json:"pool_gets"`
	Hits              float64 `json:"pool_hits"`
	Shared            float64 `json:"pool_shared"`
	Misses            float64 `json:"pool_misses"`
	PrefetchWasted    float64 `json:"pool_prefetch_wasted"`
	PoolReadBytes     float64 `json:"pool_read_bytes"`
	Fetches           float64 `json:"store_fetches"`
	FetchBytes        float64 `json:"store_fetch_bytes"`
	FetchP50          float64 `json:"store_fetch_p50_seconds"`
	FetchP99          float64 `json:"store_fetch_p99_seconds"`
	FetchErrors       float64 `json:"store_fetch_errors"`
	CacheHits         float64 `json:"cache_hits"`
	CacheMisses       float64 `json:"cache_misses"`
	CPU               float64 `json:"cpu_cores"` // CPU seconds per second
	HeldBytes         int64   `json:"pool_held_bytes"`
	Generation        uint64  `json:"generation"`
	Healthy           bool    `json:"healthy"`
	Reason            string  `json:"reason,omitempty"`
	ProcessRSSBytes   int64   `json:"rss_bytes"`
	PoolWaiters       int64   `json:"pool_waiters"`
	PoolFetchInFlight int64   `json:"pool_in_flight"`
}

// watchRecord is one --json --watch line.
type watchRecord struct {
	Time  time.Time `json:"time"`
	Rates rates     `json:"rates"`
	Stats statsView `json:"stats"`
}

// ratesBetween computes the rates from a to b (a zero a: since start).
func ratesBetween(a, b statsView) rates {
	secs := max(float64(b.UptimeNs-a.UptimeNs)/1e9, 1e-9)
	rate := func(x, y int64) float64 { return float64(max(y-x, 0)) / secs }
	fuseLat := b.Fuse.ReadLatency.Sub(a.Fuse.ReadLatency)
	fetchLat := b.Pool.FetchLatency.Sub(a.Pool.FetchLatency)
	r := rates{
		IntervalSeconds: secs,
		FuseReads:       rate(a.Fuse.Reads, b.Fuse.Reads), FuseReadBytes: rate(a.Fuse.ReadBytes, b.Fuse.ReadBytes),
		FuseReadP50: fuseLat.P50Seconds, FuseReadP99: fuseLat.P99Seconds, FuseErrors: rate(a.Fuse.Errors, b.Fuse.Errors),
		Gets: rate(a.Pool.Gets, b.Pool.Gets), Hits: rate(a.Pool.Hits, b.Pool.Hits),
		Shared: rate(a.Pool.Shared, b.Pool.Shared), Misses: rate(a.Pool.Misses, b.Pool.Misses),
		PrefetchWasted: rate(a.Pool.PrefetchWasted, b.Pool.PrefetchWasted),
		PoolReadBytes:  rate(a.Pool.ReadBytes, b.Pool.ReadBytes),
		Fetches:        rate(a.Pool.Fetches, b.Pool.Fetches), FetchBytes: rate(a.Pool.FetchBytes, b.Pool.FetchBytes),
		FetchP50: fetchLat.P50Seconds, FetchP99: fetchLat.P99Seconds, FetchErrors: rate(a.Pool.Errors, b.Pool.Errors),
		CPU:       max(b.Process.CPUSeconds-a.Process.CPUSeconds, 0) / secs,
		HeldBytes: b.Pool.BytesHeld, Generation: b.Meta.Generation, Healthy: b.Healthy, Reason: b.Reason,
		ProcessRSSBytes: b.Process.RSSBytes, PoolWaiters: b.Pool.Waiters, PoolFetchInFlight: b.Pool.InFlight,
	}
	if b.Cache != nil {
		var ac struct{ hits, misses int64 }
		if a.Cache != nil {
			ac.hits, ac.misses = a.Cache.Hits, a.Cache.Misses
		}
		r.CacheHits, r.CacheMisses = rate(ac.hits, b.Cache.Hits), rate(ac.misses, b.Cache.Misses)
	}
	return r
}

// column is one --watch column: its layer, name, width and value.
type column struct {
	layer, name string
	width       int
	value       func(r rates) string
}

func share(part, whole float64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", 100*part/whole)
}

var watchColumns = []column{
	{"fuse", "rd/s", 5, func(r rates) string { return count(r.FuseReads) }},
	{"fuse", "B/s", 5, func(r rates) string { return cbytes(r.FuseReadBytes) }},
	{"fuse", "p50", 5, func(r rates) string { return dur(r.FuseReadP50) }},
	{"fuse", "p99", 5, func(r rates) string { return dur(r.FuseReadP99) }},
	{"pool", "get/s", 5, func(r rates) string { return count(r.Gets) }},
	{"pool", "hit%", 4, func(r rates) string { return share(r.Hits, r.Gets) }},
	{"pool", "shr%", 4, func(r rates) string { return share(r.Shared, r.Gets) }},
	{"pool", "mis%", 4, func(r rates) string { return share(r.Misses, r.Gets) }},
	{"pool", "wst/s", 5, func(r rates) string { return count(r.PrefetchWasted) }},
	{"store", "fch/s", 5, func(r rates) string { return count(r.Fetches) }},
	{"store", "B/s", 5, func(r rates) string { return cbytes(r.FetchBytes) }},
	{"store", "p50", 5, func(r rates) string { return dur(r.FetchP50) }},
	{"store", "p99", 5, func(r rates) string { return dur(r.FetchP99) }},
	{"store", "err", 4, func(r rates) string { return count(r.FetchErrors) }},
	{"cache", "hit/s", 5, func(r rates) string { return count(r.CacheHits) }},
	{"cache", "mis/s", 5, func(r rates) string { return count(r.CacheMisses) }},
	{"meta", "gen", 5, func(r rates) string { return fmt.Sprint(r.Generation) }},
	{"meta", "ok", 3, func(r rates) string { return map[bool]string{true: "ok", false: "ERR"}[r.Healthy] }},
	{"proc", "cpu%", 4, func(r rates) string { return fmt.Sprintf("%.0f", 100*r.CPU) }},
	{"proc", "rss", 4, func(r rates) string { return cbytes(float64(r.ProcessRSSBytes)) }},
}

const timeWidth = 8 // 15:04:05

// printHeader prints the layer names over their columns, then the column
// names.
func printHeader(w io.Writer) {
	var top, names strings.Builder
	top.WriteString(strings.Repeat(" ", timeWidth))
	names.WriteString(fmt.Sprintf("%-*s", timeWidth, "time"))
	for i := 0; i < len(watchColumns); {
		j, span := i, 0
		for ; j < len(watchColumns) && watchColumns[j].layer == watchColumns[i].layer; j++ {
			span += watchColumns[j].width + 1
			names.WriteString(fmt.Sprintf(" %*s", watchColumns[j].width, watchColumns[j].name))
		}
		top.WriteString(" " + centre(watchColumns[i].layer, span-1))
		i = j
	}
	fmt.Fprintln(w, top.String())
	fmt.Fprintln(w, names.String())
}

// centre pads s with dashes to width n.
func centre(s string, n int) string {
	pad := max(n-len(s)-2, 0)
	return strings.Repeat("-", pad/2) + " " + s + " " + strings.Repeat("-", pad-pad/2)
}

func printRow(w io.Writer, now time.Time, r rates) {
	var b strings.Builder
	b.WriteString(now.Format("15:04:05"))
	for _, c := range watchColumns {
		b.WriteString(fmt.Sprintf(" %*s", c.width, c.value(r)))
	}
	fmt.Fprintln(w, b.String())
}

func ibytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// cbytes is a byte count in at most 4 characters: 512, 9.5K, 12M, 1.2G.
func cbytes(v float64) string {
	units := []string{"", "K", "M", "G", "T", "P"}
	i := 0
	for ; v >= 999.5 && i < len(units)-1; i++ {
		v /= 1024
	}
	if i == 0 || v >= 9.95 {
		return fmt.Sprintf("%.0f%s", v, units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}

// count is a rate in at most 5 characters.
func count(v float64) string {
	switch {
	case v >= 999999.5:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 9999.5:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 10 || v == 0:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// dur is a latency in seconds, in at most 5 characters; "-" for none.
func dur(s float64) string {
	d := time.Duration(s * 1e9)
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 9950*time.Microsecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < 999500*time.Microsecond:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	case d < 9950*time.Millisecond:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return fmt.Sprintf("%.0fs", d.Seconds())
	}
}
