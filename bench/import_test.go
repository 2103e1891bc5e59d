package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"blockfs/bench/cpustat"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/importer"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// bigTree is the tree BenchmarkImportBigTree imports: BLOCKFS_IMPORT_TREE,
// or the one bench/coldstart.sh --big assembles.
func bigTree() string {
	if p := os.Getenv("BLOCKFS_IMPORT_TREE"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "blockfs", "coldstart-big", "tree")
}

// BenchmarkImportBigTree imports a software tree of tens of thousands of
// small files (bigTree) straight into MinIO with the defaults of `blockfs
// import` (packs below 64 KiB), into a fresh bucket each round, and prints
// files/s, MiB/s, the requests MinIO served by type, and whose CPU the
// import used (ours, MinIO's, and what was left idle): the import of such a
// tree is bounded by one of them, or by neither (waiting). A missing tree
// is a skip, also under CI: it is a local benchmark, not a test.
// BLOCKFS_IMPORT_WORKERS sets Options.Workers (0: the default),
// BLOCKFS_IMPORT_PACK_BELOW Options.PackBelow, and a non-empty
// BLOCKFS_IMPORT_ASK_STORE Options.AskStore; BLOCKFS_IMPORT_LATENCY_MS=N
// goes through toxiproxy with N ms per request.
func BenchmarkImportBigTree(b *testing.B) {
	src := bigTree()
	if _, err := os.Stat(src); err != nil {
		b.Skipf("no tree to import at %s (bench/coldstart.sh --big, or BLOCKFS_IMPORT_TREE): %v", src, err)
	}
	files, size := treeSize(src)
	m := testsvc.SharedMinIO(b)
	cfg, via := s3Config(m, m.Endpoint()), "MinIO"
	if ms := envInt("BLOCKFS_IMPORT_LATENCY_MS", 0); ms > 0 {
		proxy := testsvc.StartProxy(b, m.Host())
		proxy.Latency(time.Duration(ms) * time.Millisecond)
		cfg, via = s3Config(m, proxy.Endpoint()), fmt.Sprintf("MinIO + %d ms", ms)
	}
	opts := importer.Options{PackBelow: int64(envInt("BLOCKFS_IMPORT_PACK_BELOW", importer.DefaultPackBelow)), Workers: envInt("BLOCKFS_IMPORT_WORKERS", 0),
		AskStore: os.Getenv("BLOCKFS_IMPORT_ASK_STORE") != ""}
	apis := []string{"putobject", "headobject", "getobject", "listobjectsv2"}
	for b.Loop() {
		b.StopTimer()
		spec := "s3://" + m.NewBucket(b) + "/big"
		vol, err := volume.Open(context.Background(), spec, volume.Options{Options: storeurl.Options{Create: true, S3: cfg}})
		if err != nil {
			b.Fatal(err)
		}
		im, err := importer.New(vol, opts)
		if err != nil {
			b.Fatal(err)
		}
		before := map[string]int64{}
		for _, api := range apis {
			before[api] = m.Requests(b, api)
		}
		cpu := cpustat.Take(os.Getpid(), m.PID())
		b.StartTimer()
		start := time.Now()
		st, err := im.Import(context.Background(), src, "/usr")
		took := time.Since(start)
		b.StopTimer()
		use := cpu.Since()
		if err != nil {
			b.Fatal(err)
		}
		vol.Close()
		if st.Committed != int64(files) {
			b.Fatalf("%d of %d files committed", st.Committed, files)
		}
		fmt.Printf("import of %s (%d files, %.1f MiB) into %s, packs below %d, %d workers (0: default), ask store %v: %.2f s, %.0f files/s, %.1f MiB/s\n",
			src, files, float64(size)/(1<<20), via, opts.PackBelow, opts.Workers, opts.AskStore, took.Seconds(), float64(files)/took.Seconds(), float64(size)/(1<<20)/took.Seconds())
		fmt.Printf("  requests:")
		for _, api := range apis {
			fmt.Printf(" %s %d", api, m.Requests(b, api)-before[api])
		}
		fmt.Printf("\n  packs %d, new blocks %d, metadata blocks %d; CPU: import %.2f s, MinIO %.2f s, machine %.2f s busy of %.2f s (%.0f%% idle)\n",
			st.Packs, st.NewBlocks, st.MetaBlocks, use.Procs[0].Seconds(), use.Procs[1].Seconds(), use.Busy.Seconds(), 2*took.Seconds(), 100*use.Idle)
		b.ReportMetric(float64(files)/took.Seconds(), "files/s")
		b.StartTimer()
	}
}
