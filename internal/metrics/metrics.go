// Package metrics exports what a mount or a server is doing as Prometheus
// metrics (`--metrics ADDR`). Counters that blockfs already keeps (the
// pool's, the FUSE layer's, the disk cache's) are read from their snapshots
// at scrape time (Export) rather than counted twice; the latency of every
// FUSE operation and store request is recorded here in histograms.
// docs/operations.md lists every metric.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"blockfs/blockstore"
	"blockfs/internal/latency"

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

// New returns a registry with the Go runtime and process collectors and
// blockfs_build_info.
func New() *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		opLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "fuse", Name: "operation_duration_seconds",
			Help: "Time the mount took to answer FUSE operations, by op (a read includes waiting for its block's fetch).",
			// 10µs .. 168s: past the 2-minute fetch timeout, so a read
			// that waited for it lands in a bucket of its own.
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 13),
		}, []string{"op"}),
		opErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "fuse", Name: "operation_errors_total",
			Help: "FUSE operations answered with an error, by op.",
		}, []string{"op"}),
		storeLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "store", Name: "request_duration_seconds",
			Help: "Time block store requests took, by op (get, put, has; retries included).",
			// 50µs .. 210s, past the 2-minute fetch timeout.
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 12),
		}, []string{"op"}),
		storeErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "store", Name: "request_errors_total",
			Help: "Block store requests that failed, by op (a block that Has finds missing is not a failure).",
		}, []string{"op"}),
	}
	r.reg.MustRegister(r.opLat, r.opErrs, r.storeLat, r.storeErr, buildInfo(),
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

// Emit is how an exporter reports, at scrape time, values it reads from a
// stats snapshot. Names are full Prometheus names (blockfs_..., base units,
// the unit last, counters ending in _total); labels come in name, value
// pairs.
type Emit interface {
	Counter(name, help string, v float64, labels ...string)
	Gauge(name, help string, v float64, labels ...string)
	// Histogram exports a latency.Snapshot in seconds.
	Histogram(name, help string, h latency.Snapshot, labels ...string)
}

// Export registers fn, called at every scrape to emit metrics read from
// snapshots that blockfs keeps anyway (the pool's, the FUSE layer's, ...),
// so nothing is counted twice.
func (r *Registry) Export(fn func(Emit)) {
	r.reg.MustRegister(exporter(fn))
}

type exporter func(Emit)

// Describe sends nothing: an unchecked collector, whose set of metrics
// (labelled ones, the cache's) depends on what the snapshot holds.
func (e exporter) Describe(chan<- *prometheus.Desc) {}

func (e exporter) Collect(ch chan<- prometheus.Metric) { e(emitter{ch}) }

type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) desc(name, help string, labels []string) (*prometheus.Desc, []string) {
	var names, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		names, values = append(names, labels[i]), append(values, labels[i+1])
	}
	return prometheus.NewDesc(name, help, names, nil), values
}

func (e emitter) Counter(name, help string, v float64, labels ...string) {
	d, lv := e.desc(name, help, labels)
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
}

func (e emitter) Gauge(name, help string, v float64, labels ...string) {
	d, lv := e.desc(name, help, labels)
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
}

func (e emitter) Histogram(name, help string, h latency.Snapshot, labels ...string) {
	d, lv := e.desc(name, help, labels)
	buckets := make(map[float64]uint64, latency.Buckets-1)
	var cum uint64
	for i, c := range h.Counts {
		cum += uint64(max(c, 0))
		if i < latency.Buckets-1 { // the last bucket is +Inf
			buckets[latency.Bound(i).Seconds()] = cum
		}
	}
	e.ch <- prometheus.MustNewConstHistogram(d, cum, h.SumSeconds, buckets, lv...)
}

// buildInfo is the blockfs_build_info gauge: 1, labelled with what the
// binary was built from, read from the binary itself (debug.ReadBuildInfo).
func buildInfo() prometheus.Collector {
	version, revision, goversion := "unknown", "unknown", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goversion = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; its labels say which blockfs build is running.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goversion},
	})
	g.Set(1)
	return g
}

// ListenAddr is the address --metrics ADDR listens on: a bare ":PORT"
// means loopback (127.0.0.1:PORT), since the metrics say much about what a
// node reads and carry no authentication; binding every interface takes
// saying so ("0.0.0.0:PORT", "[::]:PORT").
func ListenAddr(addr string) string {
	if strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + addr
	}
	return addr
}

// Serve exposes /metrics on addr (see ListenAddr) until ctx ends.
func (r *Registry) Serve(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", ListenAddr(addr))
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

// Gatherer is the registry's metrics, for tests that check them.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }
