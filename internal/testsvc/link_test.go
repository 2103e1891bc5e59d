package testsvc

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestLinkShared: two connections through two proxies that pass one Link
// share its bandwidth: together they take as long as their sum of bytes at
// the link's rate (a per-connection limit would take half that), and the
// link counts every byte.
func TestLinkShared(t *testing.T) {
	const size, rate = 1 << 20, 8 << 20
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
			go func() { c.Write(make([]byte, size)); c.Close() }()
		}
	}()
	link := NewLink(rate)
	var wg sync.WaitGroup
	start := time.Now()
	for range 2 {
		p := StartProxy(t, ln.Addr().String())
		p.Through(link)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if n, err := io.Copy(io.Discard, c); n != size || err != nil {
				t.Errorf("read %d bytes (%v), want %d", n, err, size)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if want := time.Duration(float64(2*size) / rate * float64(time.Second)); took < want*9/10 {
		t.Errorf("2 x %d bytes through one %d B/s link took %v, want at least %v", size, rate, took, want*9/10)
	}
	if got := link.Sent(); got != 2*size {
		t.Errorf("link sent %d bytes, want %d", got, 2*size)
	}
}
