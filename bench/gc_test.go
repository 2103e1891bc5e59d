package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"blockfs/blockstore/storeurl"
	"blockfs/fs/chunker"
	"blockfs/fs/gc"
	"blockfs/fs/importer"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

// BenchmarkGCDir: a directory store made by BLOCKFS_BENCH_GC_IMPORTS
// imports (default 10) of BLOCKFS_BENCH_GC_MIB MiB each (default 10) in
// 1 KiB fixed blocks, every other import then removed (rm): about 100k
// blocks, half of them unreachable. Two gc runs with no grace: the first
// condemns, the second sweeps. It logs the store's blocks and bytes before
// and after and each run's wall time (bench/gc.sh runs it).
func BenchmarkGCDir(b *testing.B) {
	imports, mib := envInt("BLOCKFS_BENCH_GC_IMPORTS", 10), envInt("BLOCKFS_BENCH_GC_MIB", 10)
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		spec := filepath.Join(b.TempDir(), "store")
		buildGCStore(b, spec, storeurl.Options{}, imports, mib)
		cat, err := volume.OpenCatalog(ctx, spec, storeurl.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var ms runtime.MemStats
		var reps [2]*gc.Report
		var took [2]time.Duration
		for i := range reps {
			start := time.Now()
			reps[i], err = gc.New(cat, gc.Options{KeepLast: 1, MetaDir: b.TempDir()}).Run(ctx)
			took[i] = time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		cat.Close()
		c, s := reps[0], reps[1]
		b.Logf("%d imports of %d MiB, %d removed: before %d blocks (%d MiB), unreachable %d blocks (%d MiB)",
			imports, mib, imports/2, c.Stored.Blocks, c.Stored.Bytes>>20, c.Unreachable.Blocks, c.Unreachable.Bytes>>20)
		b.Logf("condemn run %v; sweep run %v freed %d blocks (%d MiB); after: %d blocks (%d MiB); Go runtime Sys %d MiB",
			took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), s.Freed.Blocks, s.Freed.Bytes>>20,
			s.Stored.Blocks, s.Stored.Bytes>>20, ms.Sys>>20) // the sweep run lists after deleting
		b.ReportMetric(took[0].Seconds(), "condemn-s")
		b.ReportMetric(took[1].Seconds(), "sweep-s")
		b.ReportMetric(float64(s.Freed.Blocks), "freed-blocks")
	}
}

// buildGCStore imports n datasets of mib MiB (one random file each) in
// 1 KiB fixed blocks, then removes every other one in one rm.
func buildGCStore(b *testing.B, spec string, oo storeurl.Options, n, mib int) {
	ctx := context.Background()
	src := b.TempDir()
	data := make([]byte, mib<<20)
	for i := range n {
		r := mrand.New(mrand.NewPCG(uint64(i), 42))
		for j := 0; j+8 <= len(data); j += 8 {
			v := r.Uint64()
			for k := range 8 {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		p := filepath.Join(src, fmt.Sprint(i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		create := oo
		create.Create = true
		vol, err := volume.Open(ctx, spec, volume.Options{Options: create})
		if err != nil {
			b.Fatal(err)
		}
		im, err := importer.New(vol, importer.Options{Chunking: chunker.Config{Fixed: true, Avg: 1 << 10}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := im.Import(ctx, p, fmt.Sprintf("/d%d", i)); err != nil {
			b.Fatal(err)
		}
		vol.Close()
		os.Remove(p)
	}
	vol, err := volume.Open(ctx, spec, volume.Options{Options: oo})
	if err != nil {
		b.Fatal(err)
	}
	defer vol.Close()
	var es []objects.Entry
	for i := 0; i < n; i += 2 {
		es = append(es, tree.DeleteEntry(fmt.Sprintf("/d%d", i)))
	}
	if err := vol.Meta.MultiWrite(es); err != nil {
		b.Fatal(err)
	}
	if err := vol.Publish(ctx); err != nil {
		b.Fatal(err)
	}
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkGCDirProcess: the store of BenchmarkGCDir (same variables),
// collected by the built `blockfs gc` binary as a child process, twice
// (condemn, then sweep), so that each run's peak resident set is its own:
// the kernel's rusage maxrss after Wait. Logs wall time, peak RSS and the
// run's report (bench/gc.sh N MIB process runs it).
func BenchmarkGCDirProcess(b *testing.B) {
	imports, mib := envInt("BLOCKFS_BENCH_GC_IMPORTS", 10), envInt("BLOCKFS_BENCH_GC_MIB", 10)
	bin := buildBlockfs(b)
	for range b.N {
		b.StopTimer()
		spec := filepath.Join(b.TempDir(), "store")
		start := time.Now()
		buildGCStore(b, spec, storeurl.Options{}, imports, mib)
		b.Logf("%d imports of %d MiB in 1 KiB blocks, %d removed: built in %v",
			imports, mib, imports/2, time.Since(start).Round(time.Second))
		b.StartTimer()
		gcRuns(b, bin, spec, os.Environ())
	}
}

// BenchmarkGCS3Process: BenchmarkGCDirProcess on the real MinIO (objects
// instead of files; the same variables, default 10 imports of 10 MiB: about
// 100k objects). bench/gc.sh N MIB s3 runs it.
func BenchmarkGCS3Process(b *testing.B) {
	imports, mib := envInt("BLOCKFS_BENCH_GC_IMPORTS", 10), envInt("BLOCKFS_BENCH_GC_MIB", 10)
	bin := buildBlockfs(b)
	m := testsvc.StartMinIO(b)
	env := append(os.Environ(), "AWS_ACCESS_KEY_ID="+m.AccessKey(), "AWS_SECRET_ACCESS_KEY="+m.SecretKey(),
		"AWS_ENDPOINT_URL="+m.Endpoint(), "AWS_REGION=us-east-1")
	for range b.N {
		b.StopTimer()
		spec := "s3://" + m.NewBucket(b) + "/gc"
		start := time.Now()
		buildGCStore(b, spec, storeurl.Options{S3: s3Config(m, m.Endpoint())}, imports, mib)
		b.Logf("%d imports of %d MiB in 1 KiB blocks to MinIO, %d removed: built in %v",
			imports, mib, imports/2, time.Since(start).Round(time.Second))
		b.StartTimer()
		gcRuns(b, bin, spec, env)
	}
}

// gcRuns runs gc twice as a process (condemn, then sweep) and logs each
// run's wall time, peak RSS and report.
func gcRuns(b *testing.B, bin, spec string, env []string) {
	b.Helper()
	for i, phase := range []string{"condemn", "sweep"} {
		r, took, rss := gcProcess(b, bin, spec, env)
		b.Logf("%s run: %v, peak RSS %d MiB; stored %d blocks (%d MiB), live %d, condemned %d, freed %d blocks (%d MiB)",
			phase, took.Round(time.Millisecond), rss>>20, r.Stored.Blocks, r.Stored.Bytes>>20,
			r.Live.Blocks, r.Condemned.Blocks, r.Freed.Blocks, r.Freed.Bytes>>20)
		b.ReportMetric(took.Seconds(), phase+"-s")
		b.ReportMetric(float64(rss>>20), phase+"-rss-MiB")
		if i == 1 && r.Freed.Blocks == 0 {
			b.Fatalf("the sweep freed nothing: %+v", r)
		}
	}
}

// gcProcess runs `bin gc --json` on spec with no grace, keeping the last
// snapshot, and returns its report, wall time and peak RSS in bytes.
func gcProcess(b *testing.B, bin, spec string, env []string) (gc.Report, time.Duration, int64) {
	b.Helper()
	cmd := exec.Command(bin, "gc", "--json", "--store", spec, "--keep-last", "1", "--grace", "0")
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("blockfs gc: %v: %s", err, errb.Bytes())
	}
	took := time.Since(start)
	var r gc.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		b.Fatalf("blockfs gc --json: %v: %s", err, out.Bytes())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		b.Fatal("no rusage for the gc process")
	}
	return r, took, ru.Maxrss << 10 // Linux reports KiB
}
