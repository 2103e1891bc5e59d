package latency

import (
	"testing"
	"time"
)

func TestBucketsBound(t *testing.T) {
	for _, d := range []time.Duration{0, 1, base, base + 1, time.Millisecond, 20 * time.Millisecond, 2 * time.Minute, time.Hour} {
		i := index(d)
		if i < Buckets-1 && d > Bound(i) {
			t.Errorf("%v in bucket %d bounded by %v", d, i, Bound(i))
		}
		if i > 0 && d <= Bound(i-1) {
			t.Errorf("%v in bucket %d, but fits bucket %d (%v)", d, i, i-1, Bound(i-1))
		}
	}
	if Bound(Buckets-2) < 2*time.Minute {
		t.Errorf("last bounded bucket %v does not cover the 2-minute fetch timeout", Bound(Buckets-2))
	}
}

// TestQuantileOverInterval: percentiles of an interval ignore what was
// observed before it, and land within a bucket of the true value.
func TestQuantileOverInterval(t *testing.T) {
	var h Histogram
	for range 1000 {
		h.Observe(time.Second) // before the interval
	}
	before := h.Snapshot()
	for range 98 {
		h.Observe(20 * time.Millisecond)
	}
	h.Observe(900 * time.Millisecond)
	h.Observe(900 * time.Millisecond)
	d := h.Snapshot().Sub(before)
	if d.Count != 100 {
		t.Fatalf("interval count %d, want 100", d.Count)
	}
	if p := d.Quantile(0.5); p < 16*time.Millisecond || p > 33*time.Millisecond {
		t.Errorf("p50 %v, want the bucket of 20ms", p)
	}
	if p := d.Quantile(0.99); p < 500*time.Millisecond || p > 1100*time.Millisecond {
		t.Errorf("p99 %v, want the bucket of 900ms", p)
	}
	if got := time.Duration(d.SumSeconds * 1e9); got < 3759*time.Millisecond || got > 3761*time.Millisecond {
		t.Errorf("interval sum %v, want 3.76s", got)
	}
	if (Snapshot{}).Quantile(0.5) != 0 {
		t.Error("quantile of nothing is not 0")
	}
}
