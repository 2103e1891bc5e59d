package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"blockfs/bench/cpustat"
	"blockfs/blockstore"
	"blockfs/blockstore/s3"
	"blockfs/fs"
	"blockfs/internal/testsvc"

	"github.com/minio/minio-go/v7"
)

// TestMain doubles GOMAXPROCS as blockfs mount does (fs.MoreProcs): the
// mounts here run in this process, and so do the baselines, alike.
func TestMain(m *testing.M) {
	fs.MoreProcs()
	os.Exit(testsvc.RunShared(m))
}

// benchMiB is the file size: BLOCKFS_BENCH_MIB, default 256.
func benchMiB() int {
	if n, err := strconv.Atoi(os.Getenv("BLOCKFS_BENCH_MIB")); err == nil && n > 0 {
		return n
	}
	return 256
}

func s3Config(m *testsvc.MinIO, endpoint string) *s3.Config {
	return &s3.Config{Endpoint: endpoint, AccessKey: m.AccessKey(), SecretKey: m.SecretKey(), PathStyle: true}
}

// setupS3 imports size bytes of random data as /data.bin into a fresh
// bucket (straight to MinIO) and also uploads them as a plain object
// "plain/data.bin" for tools that read ordinary objects.
func setupS3(b *testing.B, m *testsvc.MinIO, size int) (spec, bucket string, data []byte) {
	b.Helper()
	bucket = m.NewBucket(b)
	spec = "s3://" + bucket + "/bench"
	data = make([]byte, size)
	fill(data)
	src := filepath.Join(b.TempDir(), "data.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	vol, err := fs.Open(context.Background(), spec, fs.OpenOptions{Create: true, S3: s3Config(m, m.Endpoint())})
	if err != nil {
		b.Fatal(err)
	}
	defer vol.Close()
	im, err := fs.NewImporter(vol, fs.ImportOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := im.Import(context.Background(), src, "/data.bin"); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Client().PutObject(context.Background(), bucket, "plain/data.bin", bytes.NewReader(data), int64(size), minio.PutObjectOptions{}); err != nil {
		b.Fatal(err)
	}
	return spec, bucket, data
}

// timeRead reads file in a separate process (dd, 1 MiB requests) and
// returns MB/s.
func timeRead(b *testing.B, file string, size int) float64 {
	b.Helper()
	start := time.Now()
	if out, err := exec.Command("dd", "if="+file, "of=/dev/null", "bs=1M", "status=none").CombinedOutput(); err != nil {
		b.Fatalf("dd %s: %v %s", file, err, out)
	}
	return float64(size) / time.Since(start).Seconds() / 1e6
}

// mountBlockfs mounts spec with a fresh, empty local metadata directory.
func mountBlockfs(b *testing.B, spec string, cfg *s3.Config, opts fs.MountOptions, cacheDir ...string) (string, func()) {
	b.Helper()
	oo := fs.OpenOptions{S3: cfg}
	if len(cacheDir) > 0 {
		oo.CacheDir, oo.CacheSize = cacheDir[0], 1<<30
	}
	vol, err := fs.Open(context.Background(), spec, oo)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	m, err := fs.Serve(dir, vol, opts)
	if err != nil {
		b.Fatal(err)
	}
	return dir, func() { m.Unmount(); m.Wait(); vol.Close() }
}

// fill writes fast pseudo-random bytes (crypto/rand over hundreds of MiB
// in one call hogs a core in a non-preemptible vDSO call and skews the
// setup; nothing here needs real randomness).
func fill(p []byte) {
	r := mrand.New(mrand.NewPCG(1, uint64(len(p))))
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
}

// parallelGets fetches the file's blocks with plain GETs, 16 at a time:
// the practical limit of what the store gives one reader. With verify, each
// block is also checked against its SHA-256, as any correct reader must.
func parallelGets(b *testing.B, spec string, cfg *s3.Config, verify bool) (int, float64) {
	b.Helper()
	vol, err := fs.Open(context.Background(), spec, fs.OpenOptions{S3: cfg})
	if err != nil {
		b.Fatal(err)
	}
	defer vol.Close()
	n, err := vol.Tree.Lookup("/data.bin")
	if err != nil {
		b.Fatal(err)
	}
	// Each reader's buffer fits the largest block and is touched before the
	// clock starts, so the baseline pays no page faults: it is the store's
	// best, not a handicapped reader.
	var largest int64
	for _, l := range n.Blocks {
		largest = max(largest, l.Size)
	}
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, largest)
		fill(bufs[i])
	}
	work := make(chan blockstore.Locator)
	var wg sync.WaitGroup
	start := time.Now()
	for _, buf := range bufs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range work {
				if _, err := vol.Blocks.Get(context.Background(), l, buf[:l.Size]); err != nil {
					b.Error(err)
				}
				if verify && blockstore.Sum(buf[:l.Size]) != l.Hash {
					b.Errorf("block %s does not verify", l)
				}
			}
		}()
	}
	for _, l := range n.Blocks {
		work <- l
	}
	close(work)
	wg.Wait()
	return len(n.Blocks), float64(n.Size) / time.Since(start).Seconds() / 1e6
}

// rcloneRead mounts the plain object with rclone (Debian's package,
// installed by bench/s3.sh) with --vfs-cache-mode full and reads it.
func rcloneRead(b *testing.B, m *testsvc.MinIO, endpoint, bucket string, size int) float64 {
	b.Helper()
	if _, err := exec.LookPath("rclone"); err != nil {
		b.Skip("rclone not installed (bench/s3.sh installs it)")
	}
	dir, cache := b.TempDir(), b.TempDir()
	cmd := exec.Command("rclone", "mount", "bench:"+bucket+"/plain", dir, "--vfs-cache-mode", "full",
		"--cache-dir", cache, "--read-only", "--no-modtime")
	// rclone 1.60 fails on a plain-http endpoint when AWS_CA_BUNDLE is set.
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_CA_BUNDLE=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env,
		"RCLONE_CONFIG_BENCH_TYPE=s3", "RCLONE_CONFIG_BENCH_PROVIDER=Minio",
		"RCLONE_CONFIG_BENCH_ENDPOINT="+endpoint, "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+m.AccessKey(),
		"RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+m.SecretKey())
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		exec.Command("umount", "-l", dir).Run()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !mounted(dir) {
		if time.Now().After(deadline) {
			b.Fatal("rclone mount did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return timeRead(b, filepath.Join(dir, "data.bin"), size)
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(b), " "+dir+" ")
}

// BenchmarkS3ColdRead: a cold sequential read of one file over MinIO with
// 20 ms latency per request (toxiproxy), through a fresh blockfs mount,
// against the same blocks fetched by 16 parallel plain GETs, and against
// rclone mount --vfs-cache-mode full.
func BenchmarkS3ColdRead(b *testing.B) {
	m := testsvc.SharedMinIO(b)
	size := benchMiB() << 20
	spec, bucket, _ := setupS3(b, m, size)
	proxy := testsvc.StartProxy(b, m.Host())
	proxy.Latency(20 * time.Millisecond)
	cfg := s3Config(m, proxy.Endpoint())

	var mountRate, getRate, verifiedRate, rcloneRate, cacheColdRate, cacheWarmRate float64
	var mountCPU, getCPU cpustat.Usage
	var blocks int
	for b.Loop() {
		dir, unmount := mountBlockfs(b, spec, cfg, fs.MountOptions{Refresh: -1})
		c := cpustat.Take(m.PID(), os.Getpid())
		mountRate = timeRead(b, filepath.Join(dir, "data.bin"), size)
		mountCPU = c.Since()
		unmount()
		c = cpustat.Take(m.PID(), os.Getpid())
		blocks, getRate = parallelGets(b, spec, cfg, false)
		getCPU = c.Since()
		_, verifiedRate = parallelGets(b, spec, cfg, true)
		// With --cache-dir, as a node on S3 would run: first with the
		// cache empty (every block fetched and kept), then remounted with
		// the cache full and the pool empty (every block a cache hit).
		cache := b.TempDir()
		for _, r := range []*float64{&cacheColdRate, &cacheWarmRate} {
			dir, unmount := mountBlockfs(b, spec, cfg, fs.MountOptions{Refresh: -1}, cache)
			*r = timeRead(b, filepath.Join(dir, "data.bin"), size)
			unmount()
		}
		rcloneRate = rcloneRead(b, m, proxy.Endpoint(), bucket, size)
	}
	b.ReportMetric(mountRate, "blockfs-MB/s")
	b.ReportMetric(getRate, "parallel-GETs-MB/s")
	b.ReportMetric(verifiedRate, "verified-GETs-MB/s")
	b.ReportMetric(rcloneRate, "rclone-MB/s")
	b.ReportMetric(mountRate/getRate, "blockfs/GETs")
	b.ReportMetric(cacheColdRate, "cache-empty-MB/s")
	b.ReportMetric(cacheWarmRate, "cache-full-MB/s")
	fmt.Printf("cold sequential read, %d MiB in %d blocks, MinIO + 20 ms latency:\n", size>>20, blocks)
	fmt.Printf("  blockfs mount               %8.1f MB/s\n", mountRate)
	fmt.Printf("  16 plain GETs               %8.1f MB/s  (blockfs %.2fx; target >= 0.8)\n", getRate, mountRate/getRate)
	fmt.Printf("  16 GETs + SHA-256 verify    %8.1f MB/s  (blockfs %.2fx)\n", verifiedRate, mountRate/verifiedRate)
	fmt.Printf("  rclone mount (vfs full)     %8.1f MB/s  (blockfs %.2fx)\n", rcloneRate, mountRate/rcloneRate)
	fmt.Printf("  blockfs --cache-dir, empty  %8.1f MB/s  (%.2fx plain GETs)\n", cacheColdRate, cacheColdRate/getRate)
	fmt.Printf("  blockfs --cache-dir, full   %8.1f MB/s  (remounted: pool empty, every block on local disk)\n", cacheWarmRate)
	fmt.Printf("  whole-machine CPU (MinIO, toxiproxy and reader together): mount %s; plain GETs %s\n",
		mountCPU.PerMiB(size), getCPU.PerMiB(size))
	// Where it went, in ms/MiB: MinIO; this process (the mount or the
	// GETs, plus the in-process toxiproxy); the rest (dd, which also pays
	// the kernel's FUSE work on its side, and kernel threads). Counted in
	// 10 ms ticks, so each figure is good to about ±0.1 ms/MiB.
	split := func(u cpustat.Usage) string {
		minio, self := u.Procs[0], u.Procs[1]
		return fmt.Sprintf("MinIO %.2f, this process %.2f, rest %.2f",
			cpustat.MsPerMiB(minio, size), cpustat.MsPerMiB(self, size), cpustat.MsPerMiB(max(0, u.Busy-minio-self), size))
	}
	fmt.Printf("    mount phase (ms CPU/MiB):  %s\n", split(mountCPU))
	fmt.Printf("    GETs phase (ms CPU/MiB):   %s\n", split(getCPU))

	// A store-bound variant: each connection also limited to 8 MB/s, as a
	// remote store's per-request throughput is. On this 2-core machine the
	// run above is bound by the CPU that MinIO, toxiproxy and the mount
	// share; here the store is the limit, which is what readahead is for:
	// one block per round trip would give 8 MB/s.
	proxy.Bandwidth(8 << 20)
	dir, unmount := mountBlockfs(b, spec, cfg, fs.MountOptions{Refresh: -1})
	boundMount := timeRead(b, filepath.Join(dir, "data.bin"), size)
	unmount()
	_, boundGets := parallelGets(b, spec, cfg, false)
	b.ReportMetric(boundMount/boundGets, "store-bound-blockfs/GETs")
	fmt.Printf("same, each connection also limited to 8 MB/s (store-bound, not CPU-bound):\n")
	fmt.Printf("  blockfs mount               %8.1f MB/s\n", boundMount)
	fmt.Printf("  16 plain GETs               %8.1f MB/s  (blockfs %.2fx)\n", boundGets, boundMount/boundGets)
}
