package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"blockfs/bench/cpustat"
	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/s3"
	"blockfs/blockstore/storeurl"
	"blockfs/blockstore/tier"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// Link speeds of the tier benchmark: every serve's uplink and every
// mount's downlink, in bytes per second.
const (
	tierUplink   = 50e6
	tierDownlink = 50e6
	tierBlock    = 512 << 10 // fixed blocks: many per serve, so shares are even
)

// tierMounts is the number of mount processes: BLOCKFS_BENCH_MOUNTS,
// default 16.
func tierMounts() int {
	if n, err := strconv.Atoi(os.Getenv("BLOCKFS_BENCH_MOUNTS")); err == nil && n > 0 {
		return n
	}
	return 16
}

// tierRun is one tier size's outcome.
type tierRun struct {
	serves   int
	makespan time.Duration
	ideal    time.Duration // max(bytes x mounts / total uplink, bytes / downlink)
	owners   time.Duration // the busiest serve's owned bytes x mounts / uplink
	link     time.Duration // the busiest uplink's bytes (sent) / uplink: the bound with balancing
	gets     int64         // MinIO GETs during the run
	refGets  int64         // of which ref reads the serves passed on
	fetches  []int64       // blocks each serve fetched from MinIO
	sent     []int64       // bytes through each serve's uplink
	ours     time.Duration // CPU time of the serves and mounts
	proxies  time.Duration // CPU time of this process: the toxiproxies and their links
	readers  time.Duration // CPU time of the readers (read + SHA-256, see readerCmd)
	minio    time.Duration // CPU time of MinIO
	busy     time.Duration // CPU time of the whole machine (other users' work included)
	idle     float64       // share of the machine left idle during the reads
}

// BenchmarkTier: mount processes, each with one reader of the same cold
// file, through tiers of 1, 2 and 4 serve processes over MinIO on
// loopback. Every serve has an uplink and every mount a downlink of
// bounded bandwidth, shared by all their connections: each mount reaches
// each serve through a proxy of its own that passes both links (the
// serve's, then the mount's), and names the members by URL fragment so
// that all mounts agree on owners. Reports the makespan (last reader
// done) against the ideal, and MinIO GETs against unique blocks.
func BenchmarkTier(b *testing.B) {
	testsvc.RequireFUSE(b)
	m := testsvc.SharedMinIO(b)
	bin := buildBlockfs(b)
	size := int64(benchMiB()) << 20
	mounts := tierMounts()
	bucket := m.NewBucket(b)
	spec := "s3://" + bucket + "/tier"
	env := append(os.Environ(), "AWS_ACCESS_KEY_ID="+m.AccessKey(), "AWS_SECRET_ACCESS_KEY="+m.SecretKey(),
		"AWS_ENDPOINT_URL="+m.Endpoint(), "AWS_REGION=us-east-1")
	want := tierImport(b, bin, env, spec, size)
	blocks := listBlocks(b, m, bucket, "tier")
	for h := range unreadBlocks(b, spec, *s3Config(m, m.Endpoint())) {
		delete(blocks, h) // metadata segments: mounts read the parts
	}

	var runs []tierRun
	for b.Loop() {
		for _, serves := range tierSizes(b) {
			runs = append(runs, runTier(b, m, bin, env, spec, want, size, mounts, serves, blocks))
		}
	}
	fmt.Printf("%d mounts x 1 reader of one cold %d MiB file (%d blocks of %d KiB), MinIO on loopback;\n",
		mounts, size>>20, len(blocks), tierBlock>>10)
	fmt.Printf("each serve's uplink %.0f MB/s, each mount's downlink %.0f MB/s (shared toxiproxy links); balanced placement (mount --balance, serve --peers): %v; mount pool: %s\n", tierUplink/1e6, tierDownlink/1e6, tierBalance(), tierPool())
	fmt.Printf("ideal = max(bytes x mounts / (serves x uplink), bytes / downlink); owner-bound = busiest serve's owned bytes x mounts / uplink;\nlink-bound = bytes through the busiest uplink / uplink (with balancing, what it sent to mounts and peers)\n")
	fmt.Printf("CPU seconds during the reads: ours = serves + mounts; proxy = toxiproxy (this process); sha = the readers (read + SHA-256); machine = every process of every user\n")
	fmt.Printf("  %6s %9s %9s %6s %12s %11s %10s %7s %6s %6s %6s %6s %8s %5s  %s\n", "serves", "makespan", "ideal", "ratio", "owner-bound", "link-bound", "MinIO GETs", "blocks",
		"ours", "proxy", "sha", "minio", "machine", "idle", "fetches per serve")
	for _, r := range runs {
		fmt.Printf("  %6d %9s %9s %5.2fx %12s %11s %10d %7d %6.1f %6.1f %6.1f %6.1f %8.1f %4.0f%%  %v (GETs = %d blocks + %d ref reads + %d format markers)\n", r.serves,
			r.makespan.Round(10*time.Millisecond), r.ideal.Round(10*time.Millisecond), r.makespan.Seconds()/r.ideal.Seconds(),
			r.owners.Round(10*time.Millisecond), r.link.Round(10*time.Millisecond), r.gets, len(blocks), r.ours.Seconds(), r.proxies.Seconds(), r.readers.Seconds(), r.minio.Seconds(),
			r.busy.Seconds(), 100*r.idle, r.fetches, r.gets-r.refGets-int64(r.serves), r.refGets, r.serves)
		b.ReportMetric(r.makespan.Seconds(), fmt.Sprintf("s-%dserves", r.serves))
		b.ReportMetric(r.makespan.Seconds()/r.ideal.Seconds(), fmt.Sprintf("x-ideal-%dserves", r.serves))
		if r.gets-r.refGets-int64(r.serves) != int64(len(blocks)) {
			b.Errorf("%d serves: MinIO served %d GETs, want %d blocks + %d ref reads + %d markers", r.serves, r.gets, len(blocks), r.refGets, r.serves)
		}
	}
}

// runTier starts serves and mounts, reads the file once on every mount
// at once and stops them all.
func runTier(b *testing.B, m *testsvc.MinIO, bin string, env []string, spec, want string, size int64, mounts, serves int, blocks map[blockstore.Hash]int64) tierRun {
	b.Helper()
	before := m.Requests(b, "getobject")
	var urls, names []string
	var uplinks []*testsvc.Link
	var stops []func()
	pids := []int{os.Getpid(), m.PID()} // this process runs the proxies; then MinIO, the serves, the mounts
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- { // mounts first, then serves
			stops[i]()
		}
	}()
	balance := serves > 1 && tierBalance()
	addrs := freeAddrs(b, serves)
	for i := range serves {
		names = append(names, fmt.Sprintf("#serve%d", i))
		uplinks = append(uplinks, testsvc.NewLink(tierUplink))
	}
	for i := range serves {
		args := []string{"serve", "--listen", addrs[i], "--store", spec}
		if balance {
			args = append(args, "--peers", peerSpec(b, addrs, names, uplinks, i), "--peer-name", names[i][1:])
		}
		lines, pid, stop := startProc(b, env, bin, "serving", profiled(b, fmt.Sprintf("serve%d-of-%d", i, serves), args...)...)
		stops, pids = append(stops, stop), append(pids, pid)
		urls = append(urls, serveURL(b, lines))
	}
	var mnts []string
	for range mounts {
		down := testsvc.NewLink(tierDownlink)
		var members []string
		for j, u := range urls {
			p := testsvc.StartProxy(b, u)
			p.Through(uplinks[j], down)
			if serves == 1 {
				members = append(members, p.Endpoint()) // a plain serve: no owners to agree on
			} else {
				members = append(members, p.Endpoint()+names[j])
			}
		}
		mnt := b.TempDir()
		args := []string{"mount", "--store", strings.Join(members, ","), mnt, "--refresh", "0"}
		if balance {
			args = append(args, "--balance")
		}
		if pool := tierPool(); pool != "default" {
			args = append(args, "--pool-size", pool)
		}
		_, pid, stop := startProc(b, os.Environ(), bin, "serving", profiled(b, fmt.Sprintf("mount%d-of-%d", len(mnts), serves), args...)...)
		stops, pids = append(stops, stop), append(pids, pid)
		mnts = append(mnts, mnt)
	}
	cpu := cpustat.Take(pids...)
	start := time.Now()
	var wg sync.WaitGroup
	done := make([]time.Duration, len(mnts))
	shaCPU := make([]time.Duration, len(mnts))
	for i, mnt := range mnts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := readerCmd(b, filepath.Join(mnt, "data.bin"))
			out, err := cmd.CombinedOutput()
			done[i] = time.Since(start)
			if cmd.ProcessState != nil {
				shaCPU[i] = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			if err != nil || strings.Fields(string(out))[0] != want {
				b.Errorf("%s: %v %s", mnt, err, out)
			}
		}()
	}
	wg.Wait()
	used := cpu.Since()
	r := tierRun{serves: serves, idle: used.Idle, busy: used.Busy, proxies: used.Procs[0], minio: used.Procs[1]}
	for _, p := range used.Procs[2:] {
		r.ours += p
	}
	for _, c := range shaCPU {
		r.readers += c
	}
	for _, d := range done {
		r.makespan = max(r.makespan, d)
	}
	r.ideal = time.Duration(max(float64(size)*float64(mounts)/(float64(serves)*tierUplink), float64(size)/tierDownlink) * float64(time.Second))
	owned := make([]int64, serves)
	for h, n := range blocks {
		owned[tier.Owner(names, h)] += n
	}
	var busiest int64
	for j, u := range urls {
		busiest = max(busiest, owned[j])
		pool, h := serveStats(b, u)
		r.fetches = append(r.fetches, pool.Fetches)
		r.refGets += h.RefGets - h.FixedRefGets
		r.sent = append(r.sent, uplinks[j].Sent())
	}
	r.owners = time.Duration(float64(busiest) * float64(mounts) / tierUplink * float64(time.Second))
	r.link = time.Duration(float64(slices.Max(r.sent)) / tierUplink * float64(time.Second))
	r.gets = m.WaitRequests(b, "getobject", before+int64(len(blocks))+r.refGets+int64(serves)) - before
	return r
}

// tierSizes are the tier sizes to run: 1, 2 and 4 serves, or the
// comma-separated counts in BLOCKFS_BENCH_SERVES.
func tierSizes(b *testing.B) []int {
	env := os.Getenv("BLOCKFS_BENCH_SERVES")
	if env == "" {
		return []int{1, 2, 4}
	}
	var sizes []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			b.Fatalf("BLOCKFS_BENCH_SERVES=%q: want counts of serves such as 1,2,4", env)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// tierPool is the mounts' --pool-size: BLOCKFS_BENCH_POOL, "default" for
// the mount's own default, else 64MiB. Sixteen mounts on one machine stand
// for sixteen nodes, and a pool smaller than the file is what a node
// reading more than its pool has: after the first 64 MiB every fetch
// reuses an evicted buffer's memory. A pool as big as the file (the
// default 256MiB) makes every block fresh memory, which the kernel zeroes
// at its first touch; on this machine that zeroing (clear_page_erms) was
// 13% of all CPU in the 4-serve run, time the tier is not what spends
// (docs/performance.md).
func tierPool() string {
	if p := os.Getenv("BLOCKFS_BENCH_POOL"); p != "" {
		return p
	}
	return "64MiB"
}

// tierBalance says whether tiers of several serves balance: mounts with
// --balance, serves with --peers. BLOCKFS_BENCH_BALANCE=0 turns it off.
func tierBalance() bool { return os.Getenv("BLOCKFS_BENCH_BALANCE") != "0" }

// freeAddrs returns n loopback addresses free a moment ago: serves with
// --peers must know each other's addresses before they start.
func freeAddrs(b *testing.B, n int) []string {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, ln.Addr().String())
		ln.Close()
	}
	return out
}

// peerSpec is serve i's --peers: every other serve through a proxy that
// passes that serve's uplink (a block fetched from its owner costs the
// owner's link as a mount's read does), itself directly, all named as the
// mounts name them.
func peerSpec(b *testing.B, addrs, names []string, uplinks []*testsvc.Link, i int) string {
	var members []string
	for j, a := range addrs {
		if j == i {
			members = append(members, "http://"+a+names[j])
			continue
		}
		p := testsvc.StartProxy(b, a)
		p.Through(uplinks[j])
		members = append(members, p.Endpoint()+names[j])
	}
	return strings.Join(members, ",")
}

// readerEnv names the file a run of this test binary as a reader hashes
// (see hashFile).
const readerEnv = "BLOCKFS_BENCH_READ_AND_HASH"

// readerCmd is one reader of the tier benchmark: a process that reads
// path through and prints its SHA-256 as sha256sum does. It is this test
// binary (hashFile), not coreutils' sha256sum: that one hashes at about
// 200 MB/s of CPU here, Go's SHA-256 (SHA-NI) at about 1.7 GB/s, and 16
// readers on 2 cores would otherwise spend more CPU on hashing than the
// serves and mounts spend on the reads being measured.
func readerCmd(b *testing.B, path string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), readerEnv+"="+path)
	return cmd
}

// hashFile reads path in 1 MiB reads (the mount's FUSE read size) and
// prints "<sha256>  <path>"; it returns the exit status.
func hashFile(path string) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, make([]byte, 1<<20)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%x  %s\n", h.Sum(nil), path)
	return 0
}

// profiled adds --cpuprofile to a serve's or mount's args when
// BLOCKFS_BENCH_PROFILE names a directory: one profile per process, named
// by its role, for `go tool pprof` to merge.
func profiled(b *testing.B, role string, args ...string) []string {
	dir := os.Getenv("BLOCKFS_BENCH_PROFILE")
	if dir == "" {
		return args
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return append(args, "--cpuprofile", filepath.Join(dir, role+".pprof"))
}

// buildBlockfs builds the blockfs binary into a temporary directory: the
// serves and mounts run as processes of their own, as on real nodes.
func buildBlockfs(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "blockfs")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/blockfs").CombinedOutput(); err != nil {
		b.Fatalf("go build blockfs: %v\n%s", err, out)
	}
	return bin
}

// tierImport imports size bytes of pseudo-random data as /data.bin in
// fixed blocks and returns their SHA-256 as sha256sum prints it.
func tierImport(b *testing.B, bin string, env []string, spec string, size int64) string {
	b.Helper()
	data := make([]byte, size)
	fill(data)
	src := filepath.Join(b.TempDir(), "data.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "import", "--store", spec, "--fixed", "--chunk-avg", strconv.Itoa(tierBlock), src, "/data.bin")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("import: %v\n%s", err, out)
	}
	out, err := exec.Command("sha256sum", src).Output()
	if err != nil {
		b.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}

// listBlocks returns every block of the store (data and metadata) with
// its size, listed from MinIO.
func listBlocks(b *testing.B, m *testsvc.MinIO, bucket, prefix string) map[blockstore.Hash]int64 {
	b.Helper()
	st, err := s3.Open(context.Background(), bucket, prefix, *s3Config(m, m.Endpoint()))
	if err != nil {
		b.Fatal(err)
	}
	out := map[blockstore.Hash]int64{}
	err = st.List(context.Background(), func(l blockstore.Locator) error { out[l.Hash] = l.Size; return nil })
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// unreadBlocks are the blocks of spec a mount does not read (see
// volume.UnreadSegmentBlocks).
func unreadBlocks(b *testing.B, spec string, cfg s3.Config) map[blockstore.Hash]bool {
	b.Helper()
	unread, err := volume.UnreadBlocks(context.Background(), spec, storeurl.Options{S3: &cfg})
	if err != nil {
		b.Fatal(err)
	}
	return unread
}

// startProc starts bin with args and returns its stderr lines up to the
// first containing ready (the rest goes to the benchmark's stderr) and a
// stop (SIGTERM, then wait), called at the latest when the benchmark ends.
func startProc(b *testing.B, env []string, bin, ready string, args ...string) ([]string, int, func()) {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }) }
	b.Cleanup(stop)
	r := bufio.NewReader(stderr)
	var lines []string
	for {
		line, err := r.ReadString('\n')
		lines = append(lines, line)
		if err != nil {
			b.Fatalf("%s did not start: %q %v", args[0], lines, err)
		}
		if strings.Contains(line, ready) {
			break
		}
	}
	go func() { _, _ = r.WriteTo(os.Stderr) }()
	return lines, cmd.Process.Pid, stop
}

// serveURL is the URL in a serve's "serving ... at URL" line.
func serveURL(b *testing.B, lines []string) string {
	b.Helper()
	line := lines[len(lines)-1]
	i := strings.Index(line, " at http")
	if i < 0 {
		b.Fatalf("serve: no URL in %q", line)
	}
	return strings.Fields(line[i+4:])[0]
}

// serveStats reads a serve's pool and HTTP counters from /v1/stats.
func serveStats(b *testing.B, url string) (blockstore.PoolStats, httpstore.ServerStats) {
	b.Helper()
	c, err := httpstore.Open(context.Background(), url, httpstore.ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	raw, err := c.ServerStats(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var st struct {
		Pool blockstore.PoolStats  `json:"pool"`
		HTTP httpstore.ServerStats `json:"http"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		b.Fatalf("%v: %s", err, raw)
	}
	return st.Pool, st.HTTP
}
