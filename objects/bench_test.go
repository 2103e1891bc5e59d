package objects

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// Append throughput with group commit: many concurrent writers, each Write
// returns only after its fsync; b.SetBytes reports value MB/s.
func benchAppend(b *testing.B, size int) {
	l := openT(b, b.TempDir(), Options{})
	defer l.Close()
	val := make([]byte, size)
	for i := range val {
		val[i] = byte(rand.Intn(256))
	}
	var n atomic.Int64
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			key := fmt.Appendf(nil, "/dir%d/file%d", i%100, i)
			if err := l.WriteKeys([][]byte{key, fmt.Appendf(nil, "/dir%d\x00file%d", i%100, i)}, val); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendGroupCommit4K(b *testing.B)  { benchAppend(b, 4<<10) }
func BenchmarkAppendGroupCommit64K(b *testing.B) { benchAppend(b, 64<<10) }

// One writer committing batches of 256 (1 MiB) with MultiWrite (an importer's shape).
func BenchmarkAppendMultiWrite4K(b *testing.B) {
	l := openT(b, b.TempDir(), Options{})
	defer l.Close()
	val := make([]byte, 4<<10)
	b.SetBytes(int64(len(val)))
	batch := make([]Entry, 256)
	for i := 0; i < b.N; i += len(batch) {
		for j := range batch {
			batch[j] = Entry{Keys: [][]byte{fmt.Appendf(nil, "/f%d", i+j)}, Value: val}
		}
		if err := l.MultiWrite(batch); err != nil {
			b.Fatal(err)
		}
	}
}

// Replay / index rebuild of a tree of small metadata objects with a primary
// key (path) and a slot-1 key (parent \0 name).
func BenchmarkReplay(b *testing.B) {
	const n = 500_000
	dir := b.TempDir()
	l := openT(b, dir, Options{Sync: SyncNone})
	val := make([]byte, 64)
	batch := make([]Entry, 0, 1000)
	for i := 0; i < n; i++ {
		parent := fmt.Sprintf("/d%03d/s%03d", i/5000, (i/50)%100)
		name := fmt.Sprintf("file%06d", i)
		batch = append(batch, Entry{Keys: [][]byte{[]byte(parent + "/" + name), []byte(parent + "\x00" + name)}, Value: val})
		if len(batch) == cap(batch) {
			if err := l.MultiWrite(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	l.Close()
	b.ResetTimer()
	var total time.Duration
	for b.Loop() {
		l := openT(b, dir, Options{ReadOnly: true})
		total += l.Stats().ReplayTime
		if l.Stats().Objects != n {
			b.Fatal("wrong count")
		}
		l.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "objects/s")
}

// Cleaner throughput at a given live fraction: MB/s of segment data
// processed (read, with the live part rewritten).
func benchClean(b *testing.B, live float64) {
	var bytes int64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		l := openT(b, dir, Options{SegmentSize: 1 << 20, Sync: SyncNone})
		val := make([]byte, 1024)
		const n = 8000
		r := rand.New(rand.NewSource(1))
		batch := make([]Entry, 0, 100)
		put := func(k int) {
			batch = append(batch, Entry{Keys: [][]byte{fmt.Appendf(nil, "k%06d", k), fmt.Appendf(nil, "s%06d", k)}, Value: val})
			if len(batch) == cap(batch) {
				l.MultiWrite(batch)
				batch = batch[:0]
			}
		}
		for k := 0; k < n; k++ {
			put(k)
		}
		// Kill (1-live) of the data by overwriting; the overwrites go to
		// later segments, which we then leave out by age: clean everything
		// but the head.
		for _, k := range r.Perm(n)[:int(float64(n)*(1-live))] {
			put(k)
		}
		l.MultiWrite(batch)
		l.Sync()
		start := time.Now()
		st, err := l.Clean(context.Background(), CleanOptions{MaxLiveFraction: 1})
		if err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		bytes += st.BytesRead
		l.Close()
	}
	b.ReportMetric(float64(bytes)/1e6/elapsed.Seconds(), "MB/s")
}

func BenchmarkClean50(b *testing.B) { benchClean(b, 0.5) }
func BenchmarkClean70(b *testing.B) { benchClean(b, 0.7) }
func BenchmarkClean90(b *testing.B) { benchClean(b, 0.9) }

func BenchmarkReadObject(b *testing.B) {
	l := openT(b, b.TempDir(), Options{Sync: SyncNone})
	defer l.Close()
	for i := 0; i < 1000; i++ {
		l.WriteKeys([][]byte{fmt.Appendf(nil, "/f%d", i), fmt.Appendf(nil, "/\x00f%d", i)}, make([]byte, 200))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := l.ReadObject(fmt.Appendf(nil, "/f%d", i%1000)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// writeTree writes n small metadata objects (a path and a "<parent>\x00<name>"
// slot-1 key, as the filesystem writes them) to a new log in dir.
func writeTree(b *testing.B, dir string, n int, opts Options) *Log {
	l := openT(b, dir, opts)
	val := make([]byte, 64)
	batch := make([]Entry, 0, 1000)
	for i := 0; i < n; i++ {
		parent := fmt.Sprintf("/d%03d/s%03d", i/5000, (i/50)%100)
		name := fmt.Sprintf("file%06d", i)
		batch = append(batch, Entry{Keys: [][]byte{[]byte(parent + "/" + name), []byte(parent + "\x00" + name)}, Value: val})
		if len(batch) == cap(batch) {
			if err := l.MultiWrite(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := l.MultiWrite(batch); err != nil {
			b.Fatal(err)
		}
	}
	return l
}

// Ingest of one published segment of 500k objects into an empty writer log
// (the filesystem ingests published segments at mount time). The time
// includes writing and fsyncing the local copy.
func BenchmarkIngest(b *testing.B) {
	const n = 500_000
	src := writeTree(b, b.TempDir(), n, Options{Sync: SyncNone, SegmentSize: 1 << 30})
	if err := src.Seal(); err != nil {
		b.Fatal(err)
	}
	var data []byte
	for _, si := range src.Segments() {
		if si.Sealed {
			d, err := os.ReadFile(si.Path)
			if err != nil {
				b.Fatal(err)
			}
			data = d
		}
	}
	src.Close()
	b.SetBytes(int64(len(data)))
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		l := openT(b, b.TempDir(), Options{Sync: SyncNone})
		b.StartTimer()
		start := time.Now()
		if _, err := l.Ingest(data); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if l.Stats().Objects != n {
			b.Fatal("wrong count")
		}
		l.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "objects/s")
}
