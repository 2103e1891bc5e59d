// Package testsvc starts real services for tests: a MinIO server (the S3
// implementation tests run against; never a mock) and Toxiproxy proxies
// (in process, or as a toxiproxy-server process for benchmarks) that put
// latency, resets, black holes and outages between a client and that
// server.
//
// A package whose tests share one MinIO server does:
//
//	func TestMain(m *testing.M) { os.Exit(testsvc.RunShared(m)) }
//
// and calls testsvc.SharedMinIO(t) in each test. Tests that need a server
// of their own call StartMinIO(t), which stops it when the test ends.
//
// Where the MinIO binary is missing or the server does not start, tests
// are skipped with the reason, or fail when CI=true (so CI cannot pass by
// skipping). `make minio` builds the pinned binary; see MinIOBin.
package testsvc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIOVersion is the pinned MinIO release (a Go pseudo-version of
// github.com/minio/minio), built by `make minio`.
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// startTimeout bounds how long a MinIO server may take to become ready.
const startTimeout = 60 * time.Second

// MinIOBin returns the path of the pinned MinIO binary: $BLOCKFS_MINIO_BIN
// if set, else $HOME/.cache/blockfs/bin/minio-<MinIOVersion>. It returns an
// error naming the path and how to build it if no executable is there.
func MinIOBin() (string, error) {
	p := os.Getenv("BLOCKFS_MINIO_BIN")
	if p == "" {
		dir, err := binDir()
		if err != nil {
			return "", fmt.Errorf("minio binary: %w (set BLOCKFS_MINIO_BIN)", err)
		}
		p = filepath.Join(dir, "minio-"+MinIOVersion)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("minio binary %s not found: run `make minio` or set BLOCKFS_MINIO_BIN", p)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("minio binary %s is not an executable file", p)
	}
	return p, nil
}

// binDir is where the pinned servers tests run are built once and kept:
// $HOME/.cache/blockfs/bin (the Makefile builds MinIO there too).
func binDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "blockfs", "bin"), nil
}

// MinIO is a running MinIO server on loopback, with its own data directory.
type MinIO struct {
	endpoint  string // http://127.0.0.1:port
	host      string // 127.0.0.1:port
	accessKey string
	secretKey string
	dir       string
	srv       *server // nil until started

	stopOnce sync.Once
	client   *minio.Client
}

// StartMinIO starts a MinIO server for this test and stops it (removing
// its data) when the test ends. If it cannot, the test is skipped, or
// fails when CI=true.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m, err := startMinIO()
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(m.Stop)
	return m
}

var shared struct {
	once sync.Once
	m    *MinIO
	err  error
}

// SharedMinIO returns one MinIO server shared by all tests of the package
// (started by the first caller). Tests must not assume they have it to
// themselves: use NewBucket for isolation. The server is stopped by
// RunShared/StopShared from TestMain; a process killed without it takes
// the server with it (the child gets SIGKILL when the parent dies).
func SharedMinIO(t testing.TB) *MinIO {
	t.Helper()
	shared.once.Do(func() { shared.m, shared.err = startMinIO() })
	if shared.err != nil {
		unavailable(t, shared.err)
	}
	return shared.m
}

// StopShared stops the shared server, if one was started.
func StopShared() {
	if shared.m != nil {
		shared.m.Stop()
	}
}

// RunShared runs the tests and then stops the shared server; use it as
// os.Exit(testsvc.RunShared(m)) in TestMain.
func RunShared(m *testing.M) int {
	defer StopShared()
	return m.Run()
}

// unavailable skips the test, or fails it under CI=true.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("MinIO unavailable (CI=true, so this fails rather than skips): %v", err)
	}
	t.Skipf("MinIO unavailable: %v", err)
}

func startMinIO() (*MinIO, error) {
	bin, err := MinIOBin()
	if err != nil {
		return nil, err
	}
	// Free ports are found by binding :0 and closing, so another process
	// may grab one before MinIO does; that shows up as an early exit, and
	// a fresh pair of ports is tried.
	var lastErr error
	for try := 0; try < 3; try++ {
		m, err := startMinIOOnce(bin)
		if err == nil {
			return m, nil
		}
		lastErr = err
		if !errors.Is(err, errExited) {
			break
		}
	}
	return nil, lastErr
}

func startMinIOOnce(bin string) (*MinIO, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, fmt.Errorf("start minio: %w", err)
	}
	dir, err := os.MkdirTemp("", "blockfs-minio-")
	if err != nil {
		return nil, fmt.Errorf("start minio: %w", err)
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	m := &MinIO{
		endpoint:  "http://" + host,
		host:      host,
		accessKey: "blockfs-" + randHex(4),
		secretKey: randHex(16),
		dir:       dir,
	}
	cmd := exec.Command(bin, "server", "--quiet",
		"--address", host,
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.accessKey,
		"MINIO_ROOT_PASSWORD="+m.secretKey,
		"MINIO_PROMETHEUS_AUTH_TYPE=public",
		"MINIO_BROWSER=on",
		"MINIO_UPDATE=off",
		"MINIO_CALLHOME_ENABLE=off",
	)
	srv, err := startServer(cmd)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start minio: %w", err)
	}
	m.srv = srv
	if err := m.waitReady(); err != nil {
		m.Stop()
		return nil, err
	}
	c, err := minio.New(host, &minio.Options{
		Creds:  credentials.NewStaticV4(m.accessKey, m.secretKey, ""),
		Region: "us-east-1",
	})
	if err != nil {
		m.Stop()
		return nil, fmt.Errorf("minio client: %w", err)
	}
	m.client = c
	return m, nil
}

// waitReady polls the health endpoint until MinIO answers 200, the process
// exits, or startTimeout passes.
func (m *MinIO) waitReady() error {
	hc := &http.Client{Timeout: time.Second}
	url := m.endpoint + "/minio/health/ready"
	return m.srv.waitReady("minio at "+m.endpoint, func() error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and removes its
// data. It is idempotent.
func (m *MinIO) Stop() {
	m.stopOnce.Do(func() {
		if m.srv != nil {
			m.srv.stop(10 * time.Second)
		}
		os.RemoveAll(m.dir)
	})
}

// Endpoint returns the server's URL, http://127.0.0.1:port.
func (m *MinIO) Endpoint() string { return m.endpoint }

// Host returns host:port of the S3 API.
func (m *MinIO) Host() string { return m.host }

// PID is the MinIO server's process id (0 if it is not running), for
// benchmarks that account for its CPU.
func (m *MinIO) PID() int {
	if m.srv == nil {
		return 0
	}
	return m.srv.pid()
}

// AccessKey returns the root user.
func (m *MinIO) AccessKey() string { return m.accessKey }

// SecretKey returns the root password.
func (m *MinIO) SecretKey() string { return m.secretKey }

// Client returns a raw minio-go client with root credentials, for tests
// that create buckets or tamper with objects behind a store's back.
func (m *MinIO) Client() *minio.Client { return m.client }

var bucketSeq struct {
	sync.Mutex
	n int
}

// NewBucket creates a fresh, empty bucket and returns its name.
func (m *MinIO) NewBucket(t testing.TB) string {
	t.Helper()
	bucketSeq.Lock()
	bucketSeq.n++
	n := bucketSeq.n
	bucketSeq.Unlock()
	name := fmt.Sprintf("t%d-%s", n, randHex(6))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.client.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Requests returns MinIO's own count of S3 requests of one API, from its
// Prometheus metrics (v3, computed on each scrape):
// minio_api_requests_total{name=...,type="s3"}. api is the API name, case
// ignored ("getobject", "PutObject", "headobject", "listobjectsv2",
// "deleteobject", ...). Summed over the server's nodes; 0 if the API was
// never called. Use differences between two calls, and see WaitRequests.
func (m *MinIO) Requests(t testing.TB, api string) int64 {
	t.Helper()
	n, err := m.requests(api)
	if err != nil {
		t.Fatalf("minio request count %q: %v", api, err)
	}
	return n
}

// WaitRequests waits until Requests(api) reaches at least want and returns
// it (fails the test after 10 s). MinIO bumps its counters as a handler
// returns, which can be just after the client has the response, so a
// count taken right after a call may lag by that call: wait for the count
// expected, then compare for equality to catch extra requests.
func (m *MinIO) WaitRequests(t testing.TB, api string, want int64) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := m.Requests(t, api)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond) // polling a counter, with a deadline
	}
}

func (m *MinIO) requests(api string) (int64, error) {
	// The v2 endpoints serve cached values (up to ~10 s old); v3 does not.
	resp, err := http.Get(m.endpoint + "/minio/metrics/v3/api/requests")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("metrics: %s: %s", resp.Status, b)
	}
	want := `name="` + strings.ToLower(api) + `"`
	var total int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "minio_api_requests_total{") || !strings.Contains(line, `type="s3"`) ||
			!strings.Contains(strings.ToLower(line), want) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		total += int64(v)
	}
	return total, sc.Err()
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tailBuffer keeps the last max bytes written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if over := w.b.Len() - w.max; over > 0 {
		w.b.Next(over)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
