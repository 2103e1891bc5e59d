package httpstore

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"blockfs/blockstore"
)

// hostile opens a connection and writes req to it, leaving it open.
func hostile(t *testing.T, addr, req string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestHostileClientsHoldNoSlots is issue 22 item 6: requests that announce
// a body and never send it, and clients that dribble their headers, held
// every --max-clients slot while everyone else got 503. With twice
// MaxClients of each kind held open, a normal GET still answers within a
// second, and every hostile connection is answered or cut off within its
// phase's timeout.
func TestHostileClientsHoldNoSlots(t *testing.T) {
	const maxClients, token = 4, "tok"
	e := newEnv(t, ServerOptions{MaxClients: maxClients, Token: token, Public: true,
		HeaderTimeout: 500 * time.Millisecond, BodyTimeout: 500 * time.Millisecond}, false)
	// Bigger than net/http's response buffer, so that writing the answer
	// is where the server would wait for the announced body.
	data := randBlock(7, 64<<10)
	loc := e.put(t, data)
	put := randBlock(8, 1000)
	putLoc := blockstore.LocatorOf(put)
	a := addr(e)

	var bodyless, slow []net.Conn
	for range 2 * maxClients {
		slow = append(slow, hostile(t, a, "GET /v1/blocks/"+loc.String()+" HTTP/1.1\r\nHost: x\r\nX-Slow: "))
		bodyless = append(bodyless,
			hostile(t, a, "GET /v1/blocks/"+loc.String()+" HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"),
			hostile(t, a, "PUT /v1/blocks/"+putLoc.Hash.String()+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+
				"\r\nContent-Length: 1000\r\n\r\n"+string(put[:10])))
	}
	// PUTs answered without their body being read: not authorised, bad
	// hash, bad route.
	for _, req := range []string{
		"PUT /v1/blocks/" + putLoc.Hash.String() + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
		"PUT /v1/blocks/nothex HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Length: 1000\r\n\r\n",
		"PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
	} {
		bodyless = append(bodyless, hostile(t, a, req))
	}
	waitFor(t, "the server to have every body-less request", func() bool {
		return e.h.Stats().Requests >= int64(len(bodyless))
	})

	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := hc.Get(e.srv.URL + "/v1/blocks/" + loc.String())
	if err != nil {
		t.Fatalf("normal GET with %d hostile connections open: %v", len(bodyless)+len(slow), err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || !bytes.Equal(got, data) {
		t.Fatalf("normal GET with hostile connections open: %d, %d bytes, %v", resp.StatusCode, len(got), err)
	}
	t.Logf("normal GET answered in %v with %d hostile connections open", time.Since(start), len(bodyless)+len(slow))

	// Every hostile connection ends within its phase's bound: answered (a
	// body-less GET at once, a PUT whose body stalls after BodyTimeout) or
	// not (headers never finished, after HeaderTimeout), and then closed
	// by the server, not left waiting for bytes that never come.
	for i, conn := range append(bodyless, slow...) {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("hostile connection %d answered %d", i, resp.StatusCode)
			}
			_, err = br.ReadByte()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("hostile connection %d still held open by the server after 10s (answered: %v)", i, resp != nil)
		}
	}
	if ok, err := e.dir.Has(t.Context(), putLoc.Hash); ok || err != nil {
		t.Errorf("a PUT whose body never came stored its block (%v, %v)", ok, err)
	}
	if s := e.h.Stats(); s.InFlight != 0 {
		t.Errorf("%d requests still in flight", s.InFlight)
	}
}
