package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
	"blockfs/internal/latency"
)

// TestServeExposesEverything scrapes /metrics for real and finds snapshot
// counters and gauges, FUSE operation and store request histograms.
func TestServeExposesEverything(t *testing.T) {
	r := New()
	var h latency.Histogram
	h.Observe(3 * time.Millisecond)
	r.Export(func(e Emit) {
		e.Counter("blockfs_pool_gets_total", "Gets.", 7, "result", "hit")
		e.Gauge("blockfs_pool_held_bytes", "Held.", 4096)
		e.Histogram("blockfs_pool_fetch_duration_seconds", "Fetches.", h.Snapshot())
	})
	r.ObserveOp("read", 3*time.Millisecond, false)
	r.ObserveOp("lookup", time.Millisecond, true)
	dir, err := blockstore.OpenDir(filepath.Join(t.TempDir(), "s"), true)
	if err != nil {
		t.Fatal(err)
	}
	s := r.WrapStore(dir)
	ctx := context.Background()
	data := []byte("block")
	if err := s.Put(ctx, blockstore.Sum(data), data); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, blockstore.LocatorOf([]byte("missing")), make([]byte, 7)); err == nil {
		t.Fatal("Get of a missing block succeeded")
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr, err := r.Serve(sctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`blockfs_pool_gets_total{result="hit"} 7`,
		"blockfs_pool_held_bytes 4096",
		`blockfs_pool_fetch_duration_seconds_bucket{le="0.004096"} 1`,
		`blockfs_pool_fetch_duration_seconds_bucket{le="0.002048"} 0`,
		`blockfs_pool_fetch_duration_seconds_count 1`,
		`blockfs_fuse_operation_duration_seconds_count{op="read"} 1`,
		`blockfs_fuse_operation_duration_seconds_bucket{op="read",le="167.77216"} 1`,
		`blockfs_fuse_operation_errors_total{op="lookup"} 1`,
		`blockfs_store_request_duration_seconds_count{op="put"} 1`,
		`blockfs_store_request_errors_total{op="get"} 1`,
		`blockfs_build_info{goversion="go`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestWrappedDirStoreStillMaps reads through a Pool over a timed DirStore,
// as `mount --metrics` does: the pool must still map the block in place
// (the wrapper once hid Mapper), and the read is timed once, as a get.
func TestWrappedDirStoreStillMaps(t *testing.T) {
	dir, err := blockstore.OpenDir(filepath.Join(t.TempDir(), "s"), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := bytes.Repeat([]byte("mapped block "), 1000)
	loc := blockstore.LocatorOf(data)
	if err := dir.Put(ctx, loc.Hash, data); err != nil {
		t.Fatal(err)
	}
	r := New()
	pool := blockstore.NewPool(r.WrapStore(dir), blockstore.PoolConfig{MaxBytes: 1 << 20})
	defer pool.Close()
	b, err := pool.Get(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	got := bytes.Equal(b.Bytes(), data)
	b.Release()
	if !got {
		t.Fatal("pool returned the wrong bytes")
	}
	if st := pool.Stats(); st.Mapped != 1 {
		t.Fatalf("pool over a timed DirStore mapped %d blocks, want 1 (stats %+v)", st.Mapped, st)
	}
	if n := storeCount(t, r, "get"); n != 1 {
		t.Errorf("%d store reads timed, want 1", n)
	}
}

// storeCount returns how many store requests of op r has timed.
func storeCount(t *testing.T, r *Registry, op string) uint64 {
	t.Helper()
	fams, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "blockfs_store_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == op {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// TestTimedStoreContract: the timed store keeps the Store and RefStore
// contracts and every capability of the DirStore it wraps.
func TestTimedStoreContract(t *testing.T) {
	newStore := func(t *testing.T) blockstore.Store {
		dir, err := blockstore.OpenDir(filepath.Join(t.TempDir(), "s"), true)
		if err != nil {
			t.Fatal(err)
		}
		return New().WrapStore(dir)
	}
	storetest.Run(t, newStore)
	storetest.RunRefs(t, newStore)
	dir, err := blockstore.OpenDir(filepath.Join(t.TempDir(), "s"), true)
	if err != nil {
		t.Fatal(err)
	}
	got := storetest.Capabilities(t, New().WrapStore(dir), dir)
	if want := []string{"Mapper", "RefStore", "Flusher", "HashedPutter"}; !slices.Equal(got, want) {
		t.Errorf("a DirStore's capabilities: %v, want %v", got, want)
	}
	// Over a store that cannot map, the timed store declines to map.
	mem := New().WrapStore(storetest.NewMem())
	m, _ := blockstore.As[blockstore.Mapper](mem)
	if _, err := m.Map(context.Background(), blockstore.LocatorOf(nil)); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Map over a Mem: %v, want ErrUnsupported", err)
	}
}

func TestListenAddrLoopback(t *testing.T) {
	for in, want := range map[string]string{":9420": "127.0.0.1:9420", "0.0.0.0:9420": "0.0.0.0:9420", "[::]:1": "[::]:1", "10.0.0.5:9420": "10.0.0.5:9420"} {
		if got := ListenAddr(in); got != want {
			t.Errorf("ListenAddr(%q) = %q, want %q", in, got, want)
		}
	}
	r := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := r.Serve(ctx, ":0")
	if err != nil {
		t.Fatal(err)
	}
	if ip := addr.(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf("--metrics :0 listens on %v, not loopback", addr)
	}
}
