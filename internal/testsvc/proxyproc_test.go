package testsvc

import (
	"io"
	"net"
	"syscall"
	"testing"
)

// TestProxyProcess drives a toxiproxy-server process through every control
// a Proxy has: bytes pass, Down refuses connections, Up restores them, a
// reset toxic cuts them, Clear removes it.
func TestProxyProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	p := StartProxyProcess(t, "tcp://"+ln.Addr().String()+"/")
	if p.PID() <= 0 {
		t.Fatalf("PID() = %d for a proxy in its own process", p.PID())
	}
	if err := syscall.Kill(p.PID(), 0); err != nil {
		t.Fatalf("toxiproxy-server %d: %v", p.PID(), err)
	}
	read := func() (string, error) {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			return "", err
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		return string(b), err
	}
	want := func(what string) {
		t.Helper()
		if got, err := read(); got != "hello" || err != nil {
			t.Fatalf("%s: read %q, %v; want \"hello\"", what, got, err)
		}
	}
	want("through the proxy")
	p.Down()
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("link down, yet a connection was accepted")
	}
	p.Up()
	want("link up again")
	p.ResetPeer()
	if got, _ := read(); got == "hello" {
		t.Fatal("reset_peer toxic in place, yet the reply arrived")
	}
	p.Clear()
	want("toxics cleared")
}
