package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockfs/internal/testsvc"
)

// TestStatsWithoutRoot: a user who can read the mount (--allow-other) reads
// its stats with `blockfs stats`, no privileges needed.
func TestStatsWithoutRoot(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample/README.txt"); code != 0 {
		t.Fatal(stderr)
	}
	// Paths the unprivileged user must reach: the binary and the mountpoint.
	os.Chmod(filepath.Dir(blockfsBin), 0o755)
	mnt, err := os.MkdirTemp("", "blockfs-nonroot")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(mnt)
	os.Chmod(mnt, 0o755)
	startMount(t, store, mnt, "--allow-other")
	cmd := exec.Command(blockfsBin, "stats", "--json", mnt)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"pool"`)) {
		t.Fatalf("stats as nobody: %v %s", err, out)
	}
}

// TestImportThroughServe: writes through a server need its token; with it,
// an import lands and a mount of the server reads it.
func TestImportThroughServe(t *testing.T) {
	testsvc.RequireFUSE(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample/README.txt"); code != 0 {
		t.Fatal(stderr)
	}
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("sekrit\n"), 0o600)
	_, url := startServe(t, os.Environ(), "--store", store, "--token-file", tok)

	src := "../../testdata/sample/models/config.json"
	t.Setenv("BLOCKFS_TOKEN", "")
	code, _, stderr := blockfs("import", "--store", url, src, "/via-serve/config.json")
	if code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("import without token: exit %d, %q", code, stderr)
	}
	t.Setenv("BLOCKFS_TOKEN", "wrong")
	if code, _, _ := blockfs("import", "--store", url, src, "/via-serve/config.json"); code != 1 {
		t.Errorf("import with a wrong token: exit %d", code)
	}
	if code, _, stderr := blockfs("import", "--store", url, "--store-token-file", tok, src, "/via-serve/config.json"); code != 0 {
		t.Fatalf("import with the token: %s", stderr)
	}
	t.Setenv("BLOCKFS_TOKEN", "") // reads on loopback are public; a wrong token is refused
	mnt := t.TempDir()
	startMount(t, url, mnt)
	want, _ := os.ReadFile(src)
	got, err := os.ReadFile(filepath.Join(mnt, "via-serve/config.json"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("reading the imported file through the server: %v", err)
	}
}

// TestServeTLS: serve over https with a certificate from a private CA;
// stats and a mount that trust that CA work, a client that does not is
// refused with a clear error.
func TestServeTLS(t *testing.T) {
	testsvc.RequireFUSE(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample/README.txt"); code != 0 {
		t.Fatal(stderr)
	}
	cert, key := selfSigned(t, dir)
	_, url := startServe(t, os.Environ(), "--store", store, "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("serve URL %s", url)
	}
	if code, out, stderr := blockfs("stats", "--ca-file", cert, url); code != 0 || !strings.Contains(out, "pool") {
		t.Errorf("stats over https: exit %d %s %s", code, out, stderr)
	}
	if code, _, stderr := blockfs("stats", url); code != 1 || !strings.Contains(strings.ToLower(stderr), "certificate") {
		t.Errorf("stats without the CA: exit %d, %q", code, stderr)
	}
	mnt := t.TempDir()
	startMount(t, url, mnt, "--store-ca-file", cert)
	want, _ := os.ReadFile("../../testdata/sample/README.txt")
	if got, err := os.ReadFile(filepath.Join(mnt, "README.txt")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("reading through an https mount: %v", err)
	}
}

func TestServeRefusesOpenReadsOffLoopback(t *testing.T) {
	code, _, stderr := blockfs("serve", "--store", t.TempDir(), "--listen", "0.0.0.0:0")
	if code != 2 || !strings.Contains(stderr, "--token-file") {
		t.Errorf("serve on 0.0.0.0 without a token: exit %d, %q", code, stderr)
	}
}

// selfSigned writes a certificate for 127.0.0.1 (its own CA) and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "blockfs test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestMetricsEndpoints scrapes a real mount's and a real server's
// /metrics: pool counters, FUSE operation latencies, store request
// latencies and HTTP counters are all there and moving.
func TestMetricsEndpoints(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	metricsAddr := func(lines []string) string { return metricsURL(t, lines) }
	scrape := func(url string) string { return scrapeMetrics(t, url) }

	// A server on the store, with metrics.
	serve := exec.Command(blockfsBin, "serve", "--listen", "127.0.0.1:0", "--store", store, "--metrics", "127.0.0.1:0")
	serveLines := startUntil(t, serve, "serving")
	last := serveLines[len(serveLines)-1]
	url := strings.Fields(last[strings.Index(last, " at http")+4:])[0]

	// A mount of the server, with metrics.
	mnt := t.TempDir()
	mount := exec.Command(blockfsBin, "mount", "--store", url, "--metrics", "127.0.0.1:0", "--cache-dir", t.TempDir(), "--cache-size", "64MiB", mnt)
	mountMetrics := metricsAddr(startUntil(t, mount, "serving"))
	if _, err := os.ReadFile(filepath.Join(mnt, "sample/reference/genome.fa")); err != nil {
		t.Fatal(err)
	}

	m := scrape(mountMetrics)
	for _, want := range []string{`blockfs_fuse_operation_duration_seconds_count{op="read"}`, `blockfs_fuse_operation_duration_seconds_count{op="lookup"}`,
		"blockfs_pool_fetches_total", `blockfs_fuse_operations_total{op="read"}`, `blockfs_store_request_duration_seconds_count{op="get"}`, "blockfs_meta_generation",
		"blockfs_healthy 1", "blockfs_build_info{", `blockfs_pool_gets_total{result="miss"}`,
		"blockfs_cache_misses_total", "blockfs_cache_max_bytes 6.7108864e+07"} {
		if !strings.Contains(m, want) {
			t.Errorf("mount /metrics lacks %s", want)
		}
	}
	promtoolCheck(t, m)
	if strings.Contains(m, `blockfs_pool_fetches_total{kind="demand"} 0`+"\n") {
		t.Error("mount metrics show no fetches after a read")
	}
	s := scrape(metricsAddr(serveLines))
	promtoolCheck(t, s)
	for _, want := range []string{"blockfs_healthy 1", "blockfs_http_store_down 0", `blockfs_http_route_requests_total{route="block_get"}`, `blockfs_http_requests_total{code="2xx"}`, "blockfs_pool_fetches_total", `blockfs_store_request_duration_seconds_count{op="get"}`} {
		if !strings.Contains(s, want) {
			t.Errorf("serve /metrics lacks %s", want)
		}
	}
	if strings.Contains(s, `blockfs_http_route_requests_total{route="block_get"} 0`+"\n") {
		t.Error("serve metrics show no block GETs after a mount read through it")
	}
}

// TestServeLogFlags: serve logs as mount does. With --log-format json and
// --log-file, its start, its stop and an error that ends it are JSON lines
// in the file; a bad --log-level is a usage error before anything opens.
func TestServeLogFlags(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample/README.txt"); code != 0 {
		t.Fatal(stderr)
	}
	logFile := filepath.Join(dir, "serve.log")
	cmd := serveCmd("--store", store, "--log-format", "json", "--log-file", logFile)
	url := startServeCmd(t, cmd)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	lines := jsonLogLines(t, logFile)
	if len(lines) != 2 || lines[0]["msg"] != "serving" || lines[0]["url"] != url || lines[0]["level"] != "INFO" ||
		lines[1]["msg"] != "stopped" {
		t.Errorf("log after a start and a stop: %v", lines)
	}

	// The address is taken (by a listener of ours): serve fails, and says
	// why in its log.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Remove(logFile)
	out, err := exec.Command(blockfsBin, "serve", "--store", store, "--listen", ln.Addr().String(),
		"--log-format", "json", "--log-file", logFile).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("serve on a taken port: %v %s", err, out)
	}
	lines = jsonLogLines(t, logFile)
	if len(lines) != 1 || lines[0]["level"] != "ERROR" || !strings.Contains(lines[0]["err"].(string), "listen "+ln.Addr().String()) {
		t.Errorf("log of a failed serve: %v", lines)
	}

	out, err = exec.Command(blockfsBin, "serve", "--store", store, "--log-level", "loud").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "loud") {
		t.Errorf("serve --log-level loud: %v %q; want exit 2 naming the level", err, out)
	}
}

// jsonLogLines reads a JSON log file, one object a line.
func jsonLogLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// metricsURL is the metrics URL a process announced in its lines.
func metricsURL(t *testing.T, lines []string) string {
	t.Helper()
	for _, l := range lines {
		if i := strings.Index(l, "metrics at http://"); i >= 0 {
			return strings.Fields(l[i+len("metrics at "):])[0]
		}
	}
	t.Fatalf("no metrics address in %q", lines)
	return ""
}

// scrapeMetrics reads a /metrics page.
func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
