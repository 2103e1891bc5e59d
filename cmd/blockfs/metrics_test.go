package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/diskcache"
	"blockfs/blockstore/httpstore"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/latency"
	"blockfs/internal/metrics"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// allMetrics is a registry exporting every blockfs metric, from snapshots
// with every field set.
func allMetrics() *metrics.Registry {
	var h latency.Histogram
	h.Observe(20 * time.Millisecond)
	r := metrics.New()
	r.ObserveOp("read", time.Millisecond, true)
	r.Export(func(e metrics.Emit) {
		emitPool(e, blockstore.PoolStats{Gets: 3, Hits: 1, Shared: 1, Misses: 1, Fetches: 2, DemandFetches: 1, Prefetches: 1, FetchLatency: h.Snapshot()})
		emitFuse(e, mount.FuseStats{Reads: 1})
		emitMeta(e, volume.MetaStats{Generation: 4, LastRefreshNs: time.Now().UnixNano()})
		emitHTTP(e, httpstore.ServerStats{Status2xx: 1})
		emitCache(e, diskcache.Stats{Hits: 1})
		e.Gauge("blockfs_healthy", "Healthy.", 1)
	})
	return r
}

// TestMetricsLint checks every metric against Prometheus' own naming
// rules (promlint, as `promtool check metrics` applies them). With
// $BLOCKFS_PROMTOOL naming a promtool binary, a real scrape is also fed to
// `promtool check metrics` itself.
func TestMetricsLint(t *testing.T) {
	r := allMetrics()
	problems, err := testutil.GatherAndLint(r.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "blockfs_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := r.Serve(ctx, ":0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	promtoolCheck(t, string(body))
}

// promtoolCheck feeds a scrape to `promtool check metrics`, if
// $BLOCKFS_PROMTOOL names the binary (built from Prometheus' module at a
// pinned version: see docs/operations.md).
func promtoolCheck(t *testing.T, scrape string) {
	t.Helper()
	bin := os.Getenv("BLOCKFS_PROMTOOL")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BLOCKFS_PROMTOOL is not set (make promtool builds it)")
		}
		return
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
