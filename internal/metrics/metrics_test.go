package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
)

func TestFieldsFlattens(t *testing.T) {
	got := Fields(struct {
		A int64 `json:"a"`
		B struct {
			C int64 `json:"c"`
		} `json:"b"`
		S string `json:"s"`
	}{A: 1, B: struct {
		C int64 `json:"c"`
	}{C: 2}, S: "x"})
	if len(got) != 2 || got["a"] != 1 || got["b_c"] != 2 {
		t.Fatalf("Fields = %v", got)
	}
}

// TestServeExposesEverything scrapes /metrics for real and finds snapshot
// counters and gauges, FUSE operation and store request histograms.
func TestServeExposesEverything(t *testing.T) {
	r := New()
	pool := blockstore.PoolStats{Gets: 7, BytesHeld: 4096}
	r.Snapshot("pool", map[string]bool{"bytes_held": true}, func() map[string]int64 { return Fields(pool) })
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
		"blockfs_pool_gets_total 7",
		"blockfs_pool_bytes_held 4096",
		`blockfs_fuse_operation_seconds_count{op="read"} 1`,
		`blockfs_fuse_operation_errors_total{op="lookup"} 1`,
		`blockfs_store_request_seconds_count{op="put"} 1`,
		`blockfs_store_request_errors_total{op="get"} 1`,
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
		if f.GetName() != "blockfs_store_request_seconds" {
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
