// Package latency is a fixed-bucket latency histogram cheap enough for a hot
// path (one atomic add per observation, no lock, no allocation), whose
// snapshots are plain JSON so that `blockfs stats` can subtract two of them
// and report percentiles over an interval rather than since start.
//
// Buckets double: bucket 0 holds durations up to 16µs, bucket i those in
// (16µs·2^(i-1), 16µs·2^i], and the last everything above 16µs·2^(N-2)
// (about 134 s, past the 2-minute fetch timeout). A percentile is
// interpolated inside its bucket, so it is exact to within a factor of 2
// at worst and usually far closer; that is what an operator needs to tell
// 1 ms from 20 ms from 2 s.
package latency

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Buckets is the number of buckets; base is bucket 0's upper bound.
const (
	Buckets = 25
	base    = 16 * time.Microsecond
)

// Bound returns the upper bound of bucket i (the last is unbounded and
// reports twice the one before it, for interpolation).
func Bound(i int) time.Duration {
	if i >= Buckets-1 {
		i = Buckets - 1
	}
	return base << i
}

// index returns the bucket of d.
func index(d time.Duration) int {
	if d <= base {
		return 0
	}
	// Smallest i with d <= base<<i.
	i := bits.Len64(uint64((d - 1) / base))
	return min(i, Buckets-1)
}

// Histogram counts durations. The zero value is ready to use.
type Histogram struct {
	counts [Buckets]atomic.Int64
	sumNs  atomic.Int64
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	h.counts[index(d)].Add(1)
	h.sumNs.Add(int64(d))
}

// Since records the time elapsed since start; `defer h.Since(time.Now())`.
func (h *Histogram) Since(start time.Time) { h.Observe(time.Since(start)) }

// Snapshot is a histogram's state: cumulative counts per bucket, and the
// percentiles since the histogram was made. Sub of two snapshots gives
// those of the interval between them.
type Snapshot struct {
	Count      int64   `json:"count"`
	SumSeconds float64 `json:"sum_seconds"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
	// Counts[i] counts durations in bucket i (see the package comment).
	Counts []int64 `json:"counts"`
}

// Snapshot reads the histogram. Buckets are read one by one, so a snapshot
// taken while others observe may miss observations made meanwhile; Count
// is the sum of the buckets read, so it always agrees with them.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Counts: make([]int64, Buckets)}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.SumSeconds = time.Duration(h.sumNs.Load()).Seconds()
	s.fill()
	return s
}

// Sub returns the observations in s that are not in older (an earlier
// snapshot of the same histogram), with their percentiles.
func (s Snapshot) Sub(older Snapshot) Snapshot {
	d := Snapshot{Counts: make([]int64, Buckets), SumSeconds: s.SumSeconds - older.SumSeconds}
	for i := range d.Counts {
		var a, b int64
		if i < len(s.Counts) {
			a = s.Counts[i]
		}
		if i < len(older.Counts) {
			b = older.Counts[i]
		}
		d.Counts[i] = max(a-b, 0)
		d.Count += d.Counts[i]
	}
	d.fill()
	return d
}

func (s *Snapshot) fill() {
	s.P50Seconds = s.Quantile(0.50).Seconds()
	s.P99Seconds = s.Quantile(0.99).Seconds()
}

// Quantile returns the q-quantile (0 < q <= 1) of the counted durations,
// interpolated linearly inside its bucket; 0 when nothing was counted.
func (s Snapshot) Quantile(q float64) time.Duration {
	var total int64
	for _, c := range s.Counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen int64
	for i, c := range s.Counts {
		if c == 0 || float64(seen+c) < rank {
			seen += c
			continue
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = Bound(i - 1)
		}
		hi := Bound(i)
		if i == Buckets-1 {
			hi = 2 * lo
		}
		frac := (rank - float64(seen)) / float64(c)
		return lo + time.Duration(frac*float64(hi-lo))
	}
	return Bound(Buckets - 1)
}
