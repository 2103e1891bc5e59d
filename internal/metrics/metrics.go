// Package metrics exports what a mount or a server is doing as Prometheus
// metrics (`--metrics ADDR`). Counters that blockfs already keeps (the
// pool's, the FUSE layer's, the disk cache's) are read from their snapshots
// at scrape time rather than counted twice; latencies, which nothing else
// keeps, are recorded here in histograms.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"blockfs/blockstore"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "blockfs"

// Registry holds one process's metrics.
type Registry struct {
	reg      *prometheus.Registry
	opLat    *prometheus.HistogramVec
	opErrs   *prometheus.CounterVec
	storeLat *prometheus.HistogramVec
	storeErr *prometheus.CounterVec
}

// New returns a registry with the Go runtime and process collectors.
func New() *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		opLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "fuse", Name: "operation_seconds",
			Help:    "Latency of FUSE operations answered by the mount.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
		}, []string{"op"}),
		opErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "fuse", Name: "operation_errors_total",
			Help: "FUSE operations answered with an error.",
		}, []string{"op"}),
		storeLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "store", Name: "request_seconds",
			Help:    "Latency of block store requests (retries included).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10), // 50µs .. 13s
		}, []string{"op"}),
		storeErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "store", Name: "request_errors_total",
			Help: "Block store requests that failed (a missing block on Has is not a failure).",
		}, []string{"op"}),
	}
	r.reg.MustRegister(r.opLat, r.opErrs, r.storeLat, r.storeErr,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// ObserveOp implements mount.OpObserver.
func (r *Registry) ObserveOp(op string, d time.Duration, failed bool) {
	r.opLat.WithLabelValues(op).Observe(d.Seconds())
	if failed {
		r.opErrs.WithLabelValues(op).Inc()
	}
}

// Snapshot exports a set of counters and gauges read from fn at scrape
// time: fn returns name -> value; names in gauges are gauges, the rest
// counters. Each name becomes blockfs_<subsystem>_<name> (counters get
// _total).
func (r *Registry) Snapshot(subsystem string, gauges map[string]bool, fn func() map[string]int64) {
	r.reg.MustRegister(&snapshot{subsystem: subsystem, gauges: gauges, fn: fn})
}

type snapshot struct {
	subsystem string
	gauges    map[string]bool
	fn        func() map[string]int64
}

func (s *snapshot) Describe(ch chan<- *prometheus.Desc) {
	// Unchecked collector: the set of names comes from the snapshot.
}

func (s *snapshot) Collect(ch chan<- prometheus.Metric) {
	for name, v := range s.fn() {
		kind, full := prometheus.CounterValue, prometheus.BuildFQName(namespace, s.subsystem, name+"_total")
		if s.gauges[name] {
			kind, full = prometheus.GaugeValue, prometheus.BuildFQName(namespace, s.subsystem, name)
		}
		desc := prometheus.NewDesc(full, fmt.Sprintf("blockfs %s %s (see `blockfs stats --json`).", s.subsystem, name), nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, kind, float64(v))
	}
}

// Serve exposes /metrics on addr until ctx ends.
func (r *Registry) Serve(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener is gone; nothing to report to
		}
	}()
	return ln.Addr(), nil
}

// WrapStore times every request to s. The store it returns keeps s's
// optional capabilities (see blockstore.As): it times Map and PutHashed
// itself and unwraps to s for the others.
func (r *Registry) WrapStore(s blockstore.Store) blockstore.Store {
	return &timedStore{Store: s, r: r}
}

type timedStore struct {
	blockstore.Store
	r *Registry
}

var (
	_ blockstore.Unwrapper    = (*timedStore)(nil)
	_ blockstore.Mapper       = (*timedStore)(nil)
	_ blockstore.HashedPutter = (*timedStore)(nil)
)

// errNoMap is Map's answer when the timed store cannot map: the reader
// falls back to Get, which is timed.
var errNoMap = fmt.Errorf("metrics: store cannot map: %w", errors.ErrUnsupported)

// Unwrap implements blockstore.Unwrapper.
func (t *timedStore) Unwrap() blockstore.Store { return t.Store }

func (t *timedStore) done(op string, start time.Time, err error) {
	t.r.storeLat.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		t.r.storeErr.WithLabelValues(op).Inc()
	}
}

func (t *timedStore) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	start := time.Now()
	n, err := t.Store.Get(ctx, loc, dst)
	t.done("get", start, err)
	return n, err
}

func (t *timedStore) Put(ctx context.Context, h blockstore.Hash, data []byte) error {
	start := time.Now()
	err := t.Store.Put(ctx, h, data)
	t.done("put", start, err)
	return err
}

func (t *timedStore) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	start := time.Now()
	ok, err := t.Store.Has(ctx, h)
	t.done("has", start, err)
	return ok, err
}

// Map times a mapped read as op "get", like a copied one: both are one
// read of a block from the store, and how many were mapped is the pool's
// mapped counter. A store that cannot map is not timed: nothing was read,
// and the Get that follows is.
func (t *timedStore) Map(ctx context.Context, loc blockstore.Locator) (*blockstore.Mapping, error) {
	m, ok := blockstore.As[blockstore.Mapper](t.Store)
	if !ok {
		return nil, errNoMap
	}
	start := time.Now()
	mp, err := m.Map(ctx, loc)
	if errors.Is(err, errors.ErrUnsupported) {
		return nil, err
	}
	t.done("get", start, err)
	return mp, err
}

// PutHashed times like Put, so that an import's writes are seen whichever
// way they reach the store.
func (t *timedStore) PutHashed(ctx context.Context, h blockstore.Hash, data []byte) error {
	start := time.Now()
	err := blockstore.PutHashed(ctx, t.Store, h, data)
	t.done("put", start, err)
	return err
}
