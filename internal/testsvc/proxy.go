package testsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/rs/zerolog"
)

// Proxy is a Toxiproxy TCP proxy between a client and an upstream server,
// run in process (StartProxy) or as a toxiproxy-server process of its own
// (StartProxyProcess). Toxics apply to connections already open as well as
// to new ones.
type Proxy struct {
	t      testing.TB
	ctl    control
	addr   string
	pid    int          // the toxiproxy-server process; 0 if in process
	toxics atomic.Int64 // names toxics uniquely
}

// control is what a Proxy asks of the Toxiproxy behind it, whichever way
// it runs.
type control interface {
	addToxic(toxiclient.Toxic) error
	down() error
	up() error
	clear() error
}

// inProcess controls a proxy run by this process's own Toxiproxy server.
type inProcess struct{ p *toxiproxy.Proxy }

func (c inProcess) addToxic(t toxiclient.Toxic) error {
	body, err := json.Marshal(t) // the API's form, which the server takes
	if err != nil {
		return err
	}
	_, err = c.p.Toxics.AddToxicJson(bytes.NewReader(body))
	return err
}
func (c inProcess) down() error { c.p.Stop(); return nil }
func (c inProcess) up() error {
	if err := c.p.Start(); err != nil && err != toxiproxy.ErrProxyAlreadyStarted {
		return err
	}
	return nil
}
func (c inProcess) clear() error { c.p.Toxics.ResetToxics(context.Background()); return nil }

var proxySeq atomic.Int64

// StartProxy starts a proxy listening on 127.0.0.1 (a free port) that
// forwards to upstream (host:port, or a URL such as MinIO.Endpoint()). It
// is stopped when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	upstream = hostPort(upstream)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	name := fmt.Sprintf("proxy%d", proxySeq.Add(1))
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("start toxiproxy to %s: %v", upstream, err)
	}
	p.Lock()
	addr := p.Listen // the bound address, once started
	p.Unlock()
	t.Cleanup(p.Stop)
	return &Proxy{t: t, ctl: inProcess{p}, addr: addr}
}

// hostPort turns a URL such as MinIO.Endpoint() into host:port; host:port
// stays as it is.
func hostPort(upstream string) string {
	if i := strings.Index(upstream, "://"); i >= 0 {
		upstream = upstream[i+3:]
	}
	return strings.TrimSuffix(upstream, "/")
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Endpoint returns the proxy as an http:// URL.
func (p *Proxy) Endpoint() string { return "http://" + p.addr }

// Latency delays data flowing back from upstream by d on every
// connection (Toxiproxy's latency toxic on the downstream stream).
func (p *Proxy) Latency(d time.Duration) {
	p.t.Helper()
	p.add("latency", "downstream", 1, map[string]any{"latency": d.Milliseconds()})
}

// Bandwidth limits data flowing back from upstream to bytesPerSec on each
// connection (Toxiproxy's bandwidth toxic), like a store whose per-request
// throughput is bounded.
func (p *Proxy) Bandwidth(bytesPerSec int64) {
	p.t.Helper()
	p.add("bandwidth", "downstream", 1, map[string]any{"rate": bytesPerSec / 1000})
}

// ResetPeer resets (TCP RST) every connection as soon as upstream starts
// answering on it: each request fails, having reached the server.
func (p *Proxy) ResetPeer() { p.t.Helper(); p.ResetPeerSome(1) }

// ResetPeerSome is ResetPeer for a fraction of connections: each new
// connection is reset with probability toxicity (0..1). Existing
// connections are reset if toxicity is 1.
func (p *Proxy) ResetPeerSome(toxicity float32) {
	p.t.Helper()
	p.add("reset_peer", "downstream", toxicity, map[string]any{"timeout": 0})
}

// Timeout makes the link a black hole: nothing sent either way arrives and
// connections stay open, so clients wait until their own timeouts.
func (p *Proxy) Timeout() {
	p.t.Helper()
	p.add("timeout", "upstream", 1, map[string]any{"timeout": 0})
	p.add("timeout", "downstream", 1, map[string]any{"timeout": 0})
}

// Down takes the link down: the listener closes and every open connection
// is cut, so new connections are refused until Up.
func (p *Proxy) Down() {
	p.t.Helper()
	if err := p.ctl.down(); err != nil {
		p.t.Fatalf("toxiproxy down %s: %v", p.addr, err)
	}
}

// Up brings the link back on the same address. (Down released the port;
// only another process grabbing that very port in between can make this
// fail.)
func (p *Proxy) Up() {
	p.t.Helper()
	if err := p.ctl.up(); err != nil {
		p.t.Fatalf("toxiproxy up %s: %v", p.addr, err)
	}
}

// Clear removes every toxic.
func (p *Proxy) Clear() {
	p.t.Helper()
	if err := p.ctl.clear(); err != nil {
		p.t.Fatalf("toxiproxy: clear toxics: %v", err)
	}
}

func (p *Proxy) add(typ, stream string, toxicity float32, attrs map[string]any) {
	p.t.Helper()
	t := toxiclient.Toxic{
		Name:       fmt.Sprintf("%s_%s_%d", typ, stream, p.toxics.Add(1)),
		Type:       typ,
		Stream:     stream,
		Toxicity:   toxicity,
		Attributes: attrs,
	}
	if err := p.ctl.addToxic(t); err != nil {
		p.t.Fatalf("toxiproxy: add %s toxic: %v", typ, err)
	}
}
