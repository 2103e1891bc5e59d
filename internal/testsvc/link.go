package testsvc

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// Link is one network link of a given bandwidth shared by every
// connection through every proxy that passes it (Proxy.Through): a
// server's uplink, carried by all its clients' connections, or a node's
// downlink, carried by its connections to every server. Toxiproxy's own
// bandwidth toxic limits each connection on its own, which is not how a
// link saturates.
type Link struct {
	name string
	rate float64 // bytes per second

	mu   sync.Mutex
	next time.Time // when the bytes handed to the link so far have passed
	sent atomic.Int64
}

// links are the Links by name, for the toxics that pass them (Toxiproxy
// builds a toxic from its JSON attributes, so it can only name a Link).
var (
	links   sync.Map
	linkSeq atomic.Int64
)

func init() { toxics.Register(linkToxicType, new(linkToxic)) }

const linkToxicType = "blockfs_shared_link"

// NewLink returns a link of bytesPerSec.
func NewLink(bytesPerSec int64) *Link {
	l := &Link{name: fmt.Sprintf("link%d", linkSeq.Add(1)), rate: float64(bytesPerSec)}
	links.Store(l.name, l)
	return l
}

// Sent returns the bytes that have passed the link.
func (l *Link) Sent() int64 { return l.sent.Load() }

// reserve hands n bytes to the link and returns when they will have
// passed: the link sends what it is handed in order, at its rate, idle
// time not saved up for later.
func (l *Link) reserve(n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	return l.next
}

// Through makes the data flowing back from upstream pass each of links in
// turn, sharing each with every other connection through it. In-process
// proxies only (StartProxy): a toxiproxy-server process has no such toxic.
func (p *Proxy) Through(ls ...*Link) {
	p.t.Helper()
	if p.pid != 0 {
		p.t.Fatal("Proxy.Through: shared links exist only in process (StartProxy)")
	}
	for _, l := range ls {
		if _, ok := links.Load(l.name); !ok {
			p.t.Fatalf("Proxy.Through: link %s not made by NewLink", l.name)
		}
		p.add(linkToxicType, "downstream", 1, map[string]any{"link": l.name})
	}
}

// linkToxic passes each chunk once its link has sent it.
type linkToxic struct {
	Link string `json:"link"`
}

func (t *linkToxic) Pipe(stub *toxics.ToxicStub) {
	v, _ := links.Load(t.Link)
	l, _ := v.(*Link)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var c *stream.StreamChunk
		select {
		case <-stub.Interrupt:
			return
		case c = <-stub.Input:
		}
		if c == nil {
			stub.Close()
			return
		}
		if l != nil {
			timer.Reset(time.Until(l.reserve(len(c.Data))))
			select {
			case <-timer.C:
			case <-stub.Interrupt:
				stub.WriteOutput(c, 5*time.Second) // drop no data
				return
			}
			l.sent.Add(int64(len(c.Data)))
		}
		stub.Output <- c
	}
}
