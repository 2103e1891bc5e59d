package volume_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/objects"
)

// Mount start-up and resident metadata with and without parts: a store of
// BLOCKFS_BENCH_FILES (default 200000) files in directories of 1000,
// published once (with parts). What is timed is what a mount does before
// it can answer: volume.Open, then a Lookup; "walk" adds a full Walk, and
// reports the heap in use per file after it.
//
//	BLOCKFS_BENCH_FILES=1000000 go test -run '^$' -bench PartsStartup -benchtime 3x ./fs/volume/
func BenchmarkPartsStartup(b *testing.B) {
	files := 200000
	if s := os.Getenv("BLOCKFS_BENCH_FILES"); s != "" {
		files, _ = strconv.Atoi(s)
	}
	spec := filepath.Join(b.TempDir(), "store")
	publishTime, err := benchPublish(spec, files)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d files: write and publish (parts included) %v", files, publishTime)
	if err := benchRepublish(b, spec); err != nil {
		b.Fatal(err)
	}
	for _, lazy := range []bool{false, true} {
		name := map[bool]string{false: "ingest", true: "parts"}[lazy]
		b.Run(name+"/open", func(b *testing.B) {
			for range b.N {
				v, err := volume.Open(context.Background(), spec, volume.Options{Lazy: lazy})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := v.Tree.Lookup("/d0/f0"); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				v.Close()
				b.StartTimer()
			}
		})
		b.Run(name+"/walk", func(b *testing.B) {
			for range b.N {
				before := heapInuse()
				v, err := volume.Open(context.Background(), spec, volume.Options{Lazy: lazy})
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				if err := v.Tree.Walk("/", func(string, *tree.Node) error { n++; return nil }); err != nil {
					b.Fatal(err)
				}
				after := heapInuse()
				b.ReportMetric(float64(int64(after)-int64(before))/float64(files), "heap-B/file")
				if lazy {
					b.ReportMetric(float64(v.MetaStats().PartsResident)/float64(files), "parts-B/file")
				}
				b.StopTimer()
				v.Close()
				b.StartTimer()
				if n < files {
					b.Fatalf("walked %d nodes", n)
				}
			}
		})
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// benchPublish writes a tree of files empty-block files into a new store
// and publishes it.
func benchPublish(spec string, files int) (time.Duration, error) {
	start := time.Now()
	oo := volume.Options{}
	oo.Create = true
	v, err := volume.Open(context.Background(), spec, oo)
	if err != nil {
		return 0, err
	}
	defer v.Close()
	dir := &tree.Node{Kind: tree.KindDir, Mode: 0o755}
	var batch []objects.Entry
	for i := range files {
		if i%1000 == 0 {
			batch = append(batch, tree.Entry(fmt.Sprintf("/d%d", i/1000), dir))
		}
		n := &tree.Node{Kind: tree.KindFile, Mode: 0o644, MtimeNs: int64(i), Owned: true, UID: 1000, GID: 1000}
		n.SetBlocks([]blockstore.Locator{blockstore.LocatorOf([]byte(strconv.Itoa(i)))})
		batch = append(batch, tree.Entry(fmt.Sprintf("/d%d/f%d", i/1000, i%1000), n))
		if len(batch) >= 4096 {
			if err := v.Meta.MultiWrite(batch); err != nil {
				return 0, err
			}
			batch = batch[:0]
		}
	}
	if err := v.Meta.MultiWrite(batch); err != nil {
		return 0, err
	}
	if err := v.Publish(context.Background()); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// benchRepublish logs what the parts cost a publish: a new volume's first
// publish of one changed file builds every part, its second only the dirty
// ones.
func benchRepublish(b *testing.B, spec string) error {
	v, err := volume.Open(context.Background(), spec, volume.Options{})
	if err != nil {
		return err
	}
	defer v.Close()
	for i, what := range []string{"full parts build", "incremental parts build"} {
		n := &tree.Node{Kind: tree.KindFile, Mode: 0o600, MtimeNs: int64(i)}
		if err := v.Meta.MultiWrite([]objects.Entry{tree.Entry("/d3/f3", n)}); err != nil {
			return err
		}
		before := v.MetaStats().PartsBuilt
		start := time.Now()
		if err := v.Publish(context.Background()); err != nil {
			return err
		}
		b.Logf("publish of one changed file, %s: %v, %d parts encoded", what, time.Since(start), v.MetaStats().PartsBuilt-before)
	}
	return nil
}
