package testsvc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
)

// toxiproxyModule is the module whose cmd/server is toxiproxy-server; the
// version is the one go.mod pins for the in-process proxies.
const toxiproxyModule = "github.com/Shopify/toxiproxy/v2"

// StartProxyProcess is StartProxy with Toxiproxy in a process of its own:
// toxiproxy-server, built by the go command at the version go.mod pins and
// driven over its HTTP API. Its CPU time can then be told apart from the
// client's (PID), and it can be pinned to other cores than the client, as
// a real network and store are not on the client's machine. The process
// is stopped when the test ends.
func StartProxyProcess(t testing.TB, upstream string) *Proxy {
	t.Helper()
	bin, err := toxiproxyBin()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	api := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	srv, err := startServer(exec.Command(bin, "-host", "127.0.0.1", "-port", strconv.Itoa(ports[0])))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.stop(time.Second) })
	c := toxiclient.NewClient(api)
	if err := srv.waitReady("toxiproxy-server at "+api, func() error { _, err := c.Version(); return err }); err != nil {
		t.Fatal(err)
	}
	p, err := c.CreateProxy("blockfs", "127.0.0.1:0", hostPort(upstream))
	if err != nil {
		t.Fatalf("toxiproxy-server: create proxy to %s: %v", upstream, err)
	}
	return &Proxy{t: t, ctl: remote{p}, addr: p.Listen, pid: srv.pid()}
}

// PID is the toxiproxy-server process of a proxy from StartProxyProcess;
// 0 for one run in process.
func (p *Proxy) PID() int { return p.pid }

// remote controls a proxy in a toxiproxy-server process.
type remote struct{ p *toxiclient.Proxy }

func (c remote) addToxic(t toxiclient.Toxic) error {
	_, err := c.p.AddToxic(t.Name, t.Type, t.Stream, t.Toxicity, t.Attributes)
	return err
}
func (c remote) down() error { return c.p.Disable() }
func (c remote) up() error   { return c.p.Enable() }
func (c remote) clear() error {
	toxics, err := c.p.Toxics()
	for _, t := range toxics {
		if err == nil {
			err = c.p.RemoveToxic(t.Name)
		}
	}
	return err
}

// toxiproxyBin returns the toxiproxy-server binary for the pinned version,
// building it into binDir the first time (a few seconds:
// its packages are already in the module cache for the in-process proxy).
func toxiproxyBin() (string, error) {
	// Test binaries carry no module list, so ask the go command, from
	// inside this module (tests run in their package's directory).
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", toxiproxyModule).Output()
	version := strings.TrimSpace(string(out))
	if err != nil || version == "" {
		return "", fmt.Errorf("toxiproxy-server: which version does go.mod pin? go list: %v", err)
	}
	dir, err := binDir()
	if err != nil {
		return "", fmt.Errorf("toxiproxy-server: %w", err)
	}
	bin := filepath.Join(dir, "toxiproxy-server-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("toxiproxy-server: %w", err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	// Built inside this module, so go.mod and go.sum pin and verify it.
	out, err = exec.Command("go", "build", "-o", tmp, toxiproxyModule+"/cmd/server").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building toxiproxy-server %s: %v\n%s", version, err, out)
	}
	return bin, os.Rename(tmp, bin)
}
