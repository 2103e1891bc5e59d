package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/internal/testsvc"
)

// s3Env is the environment a blockfs process needs for the test MinIO.
func s3Env(m *testsvc.MinIO, endpoint string) []string {
	return append(os.Environ(), "AWS_ACCESS_KEY_ID="+m.AccessKey(), "AWS_SECRET_ACCESS_KEY="+m.SecretKey(),
		"AWS_ENDPOINT_URL="+endpoint, "AWS_REGION=us-east-1")
}

// importJSON runs `blockfs import --json` and returns its summary.
func importJSON(t *testing.T, env []string, args ...string) map[string]float64 {
	t.Helper()
	cmd := exec.Command(blockfsBin, append([]string{"import", "--json"}, args...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("import: %v %s", err, stderrOf(err))
	}
	var st map[string]float64
	json.Unmarshal(out, &st)
	return st
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// startServe runs `blockfs serve` on a free loopback port and returns the
// process and its URL, read from its "serving" line.
func startServe(t *testing.T, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := serveCmd(args...)
	cmd.Env = env
	return cmd, startServeCmd(t, cmd)
}

// serveCmd is `blockfs serve` on a free loopback port with args.
func serveCmd(args ...string) *exec.Cmd {
	return exec.Command(blockfsBin, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
}

// startServeCmd starts a serveCmd and returns the URL it serves at.
func startServeCmd(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	u, _ := startServeLines(t, cmd)
	return u
}

// startServeLines starts a serveCmd and returns the URL it serves at and
// the lines it wrote until then.
func startServeLines(t *testing.T, cmd *exec.Cmd) (string, []string) {
	t.Helper()
	lines := startUntil(t, cmd, "serving")
	line := lines[len(lines)-1]
	i := strings.Index(line, " at http")
	if i < 0 {
		t.Fatalf("serve: no URL in %q", line)
	}
	return strings.Fields(line[i+4:])[0], lines
}

// serverStats asks a server for its stats the way `blockfs stats --json` does.
func serverStats(t *testing.T, url string) (pool blockstore.PoolStats, h httpstore.ServerStats) {
	t.Helper()
	out, err := exec.Command(blockfsBin, "stats", "--json", url).Output()
	if err != nil {
		t.Fatalf("stats %s: %v %s", url, err, stderrOf(err))
	}
	var st struct {
		Pool blockstore.PoolStats  `json:"pool"`
		HTTP httpstore.ServerStats `json:"http"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return st.Pool, st.HTTP
}

// TestClusterHerd: MinIO behind 20 ms of latency, one blockfs serve, 8
// blockfs mount processes on it (8 nodes), each with 4 concurrent readers
// of the same cold 64 MiB file. MinIO sees exactly one GET per unique block
// (its own request metrics), the server one fetch per block, and every
// reader gets the right bytes.
func TestClusterHerd(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/herd"
	src := filepath.Join(t.TempDir(), "input.bin")
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i*7 + i/4093)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	st := importJSON(t, s3Env(m, m.Endpoint()), "--store", spec, src, "/input.bin")
	unique := int64(st["new_blocks"] + st["meta_blocks"])
	// Mounts serve from the metadata parts: the segments are never read.
	unique -= int64(len(segmentBlocks(t, spec, s3Config(m))))

	proxy := testsvc.StartProxy(t, m.Host())
	proxy.Latency(20 * time.Millisecond)
	before := m.Requests(t, "getobject")
	_, url := startServe(t, s3Env(m, proxy.Endpoint()), "--store", spec)

	const nodes, readers = 8, 4
	var mnts []string
	for range nodes {
		mnt := t.TempDir()
		startMount(t, url, mnt, "--refresh", "0")
		mnts = append(mnts, mnt)
	}
	var wg sync.WaitGroup
	errs := make(chan error, nodes*readers)
	for _, mnt := range mnts {
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := exec.Command("sha256sum", filepath.Join(mnt, "input.bin")).Output()
				if err != nil {
					errs <- err
				} else if got := strings.Fields(string(out))[0]; got != want {
					errs <- fmt.Errorf("%s: wrong bytes", mnt)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	pool, h := serverStats(t, url)
	if pool.Fetches != unique {
		t.Errorf("server fetched %d blocks, want one per unique block: %d", pool.Fetches, unique)
	}
	// Refs are mutable and pass through to the store on every read (but
	// the marker, which the serve answers itself); serve itself reads the
	// store's blockfs-store marker once when it opens it.
	wantGets := before + unique + h.RefGets - h.FixedRefGets + 1
	if got := m.WaitRequests(t, "getobject", wantGets); got != wantGets {
		t.Errorf("MinIO served %d GETs, want %d (%d blocks + %d ref reads + the marker)", got-before, wantGets-before, unique, h.RefGets-h.FixedRefGets)
	}
	t.Logf("%d nodes x %d readers: %d unique blocks, MinIO GETs %d, server pool %+v, http block gets %d",
		nodes, readers, unique, m.Requests(t, "getobject")-before, pool, h.BlockGets)
}

// TestServeOverload: 200 clients start at once against a cold server
// (MinIO behind 20 ms) with --max-clients 16. Some get 503, every client
// ends with correct data after retries, and the server's memory stays
// under its pool size plus a small bound.
func TestServeOverload(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/overload"
	src := filepath.Join(t.TempDir(), "f")
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i*13 + i>>11)
	}
	os.WriteFile(src, data, 0o644)
	importJSON(t, s3Env(m, m.Endpoint()), "--store", spec, "--fixed", "--chunk-avg", "1MiB", src, "/f")
	proxy := testsvc.StartProxy(t, m.Host())
	proxy.Latency(20 * time.Millisecond)
	const poolSize = 32 << 20
	cmd, url := startServe(t, s3Env(m, proxy.Endpoint()), "--store", spec, "--max-clients", "16", "--pool-size", strconv.Itoa(poolSize))

	var locs []blockstore.Locator
	for i := 0; i < len(data); i += 1 << 20 {
		locs = append(locs, blockstore.LocatorOf(data[i:i+1<<20]))
	}
	var wg, ready sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 200)
	for c := range 200 {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			cl, err := httpstore.Open(context.Background(), url, httpstore.ClientOptions{MaxAttempts: 50, RetryMax: 2 * time.Second})
			ready.Done()
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			<-start // every client asks at the same moment
			buf := make([]byte, 1<<20)
			for i := range locs {
				l := locs[(i+c)%len(locs)]
				if _, err := cl.Get(context.Background(), l, buf); err != nil {
					errs <- err
					return
				}
				if blockstore.Sum(buf) != l.Hash {
					errs <- fmt.Errorf("client %d: wrong bytes", c)
					return
				}
			}
		}()
	}
	ready.Wait()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, h := serverStats(t, url)
	if h.Busy503 == 0 {
		t.Error("no 503s with 200 clients and --max-clients 16")
	}
	peak := peakRSS(t, cmd.Process.Pid)
	if bound := int64(poolSize + 96<<20); peak > bound {
		t.Errorf("server peak RSS %d MiB > pool + 96 MiB", peak>>20)
	}
	t.Logf("200 clients: %d requests, %d answered 503, server peak RSS %d MiB (pool %d MiB)", h.Requests, h.Busy503, peak>>20, poolSize>>20)
}

// peakRSS reads a process's high-water resident set size.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestServeGracefulShutdown: a GET in flight when SIGTERM arrives (its
// store fetch held up by 500 ms of latency) still gets its bytes, the
// server exits 0, and then refuses connections.
func TestServeGracefulShutdown(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/shutdown"
	src := filepath.Join(t.TempDir(), "f")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 5)
	}
	os.WriteFile(src, data, 0o644)
	importJSON(t, s3Env(m, m.Endpoint()), "--store", spec, "--fixed", "--chunk-avg", "1MiB", src, "/f")
	proxy := testsvc.StartProxy(t, m.Host())
	cmd, url := startServe(t, s3Env(m, proxy.Endpoint()), "--store", spec)
	cl, err := httpstore.Open(context.Background(), url, httpstore.ClientOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	proxy.Latency(500 * time.Millisecond)
	loc := blockstore.LocatorOf(data)
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, loc.Size)
		_, err := cl.Get(context.Background(), loc, buf)
		if err == nil && blockstore.Sum(buf) != loc.Hash {
			err = fmt.Errorf("wrong bytes")
		}
		got <- err
	}()
	// Wait until the GET is inside the server, then ask it to stop.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, h := serverStats(t, url)
		if h.BlockGets > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the GET never reached the server")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-got; err != nil {
		t.Errorf("in-flight GET during shutdown: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve exit after SIGTERM: %v", err)
	}
	if _, err := httpstore.Open(context.Background(), url, httpstore.ClientOptions{MaxAttempts: 1}); err == nil {
		t.Error("server still answers after shutdown")
	}
}

// TestS3StartErrors: a missing bucket, bad credentials and an unreachable
// endpoint each give exit 1 and one stderr line naming the problem.
func TestS3StartErrors(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	src := "../../testdata/sample/README.txt"
	for name, c := range map[string]struct {
		env  []string
		spec string
		want string
	}{
		"missing bucket":  {s3Env(m, m.Endpoint()), "s3://no-such-bucket-here/x", "bucket does not exist"},
		"bad credentials": {append(s3Env(m, m.Endpoint()), "AWS_SECRET_ACCESS_KEY=wrong"), "s3://" + bucket + "/x", "credentials"},
		"unreachable":     {s3Env(m, "http://127.0.0.1:1"), "s3://" + bucket + "/x", "unreachable"},
	} {
		cmd := exec.Command(blockfsBin, "import", "--s3-attempts", "1", "--store", c.spec, src)
		cmd.Env = c.env
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("%s: exit %v, output %q; want exit 1 and one line with %q", name, err, out, c.want)
		}
	}
}
