package httpstore

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
)

// outage is a store whose ref reads fail while down.
type outage struct {
	*storetest.Mem
	down atomic.Bool
}

func (o *outage) GetRef(ctx context.Context, name string) ([]byte, string, error) {
	if o.down.Load() {
		return nil, "", errors.New("store unreachable")
	}
	return o.Mem.GetRef(ctx, name)
}

// TestStaleRefIfError: a server that loses its store keeps answering a
// ref read with the last value it read, flagged in its stats and the
// answer (which the client counts: Upstream); a ref it never read is still
// an error; the flags clear once the store answers again.
func TestStaleRefIfError(t *testing.T) {
	st := &outage{Mem: storetest.NewMem()}
	ctx := context.Background()
	v, err := st.PutRef(ctx, "meta/head", []byte("v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	st.PutRef(ctx, "other", []byte("o"), "")
	pool := blockstore.NewPool(st, blockstore.PoolConfig{})
	defer pool.Close()
	h := NewHandler(st, pool, ServerOptions{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := Open(ctx, srv.URL, ClientOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if data, _, err := c.GetRef(ctx, "meta/head"); err != nil || string(data) != "v1" {
		t.Fatalf("ref read: %q %v", data, err)
	}
	st.down.Store(true)
	data, gv, err := c.GetRef(ctx, "meta/head")
	if err != nil || string(data) != "v1" || gv != v {
		t.Fatalf("ref read with the store down: %q %q %v; want the last value v1 %q", data, gv, err, v)
	}
	if _, _, err := c.GetRef(ctx, "other"); err == nil {
		t.Fatal("a ref never read, store down: no error")
	}
	if s := h.Stats(); s.StaleRefs != 1 || !s.StoreDown {
		t.Fatalf("stats %+v: want 1 stale ref answer, store down", s)
	}
	if n, down := c.Upstream(); n != 1 || !down {
		t.Fatalf("client: %d stale answers, store down %v; want 1, true", n, down)
	}
	if ok, reason := c.Health(); ok || reason != blockstore.ReasonStoreDown {
		t.Fatalf("client health with the store down: %v %q", ok, reason)
	}
	wantHealth(t, c, h, false, ReasonStoreFails+" (last: store unreachable)")
	st.down.Store(false)
	if _, _, err := c.GetRef(ctx, "meta/head"); err != nil {
		t.Fatal(err)
	}
	if s := h.Stats(); s.StoreDown {
		t.Fatal("store still flagged down after a ref read succeeded")
	}
	if n, down := c.Upstream(); n != 1 || down {
		t.Fatalf("client after a fresh answer: %d stale answers, store down %v; want 1, false", n, down)
	}
	if ok, reason := c.Health(); !ok || reason != "" {
		t.Fatalf("client health after a fresh answer: %v %q", ok, reason)
	}
	wantHealth(t, c, h, true, "")
}

// wantHealth checks what a server says of its health, in Handler.Health
// and in its /v1/stats as c reads them.
func wantHealth(t *testing.T, c *Client, h *Handler, ok bool, reason string) {
	t.Helper()
	if gotOK, got := h.Health(); gotOK != ok || got != reason {
		t.Fatalf("server health %v %q; want %v %q", gotOK, got, ok, reason)
	}
	b, err := c.ServerStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Healthy bool   `json:"healthy"`
		Reason  string `json:"reason"`
		HTTP    struct {
			StoreDown bool `json:"store_down"`
		} `json:"http"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Healthy != ok || st.Reason != reason || st.HTTP.StoreDown != h.storeDown.down.Load() {
		t.Fatalf("/v1/stats healthy %v %q (store_down %v); want %v %q", st.Healthy, st.Reason, st.HTTP.StoreDown, ok, reason)
	}
}

// TestStaleRefLayers: a server whose store is another server (a layer in
// front of a tier) passes a stale ref answer on flagged, so its own
// clients see the store down, and calls itself unhealthy while the layer
// behind it is; both clear once the store answers again.
func TestStaleRefLayers(t *testing.T) {
	st := &outage{Mem: storetest.NewMem()}
	ctx := context.Background()
	if _, err := st.PutRef(ctx, "meta/head", []byte("v1"), ""); err != nil {
		t.Fatal(err)
	}
	serve := func(s blockstore.Store) (*Handler, *Client) {
		pool := blockstore.NewPool(s, blockstore.PoolConfig{})
		t.Cleanup(pool.Close)
		h := NewHandler(s, pool, ServerOptions{})
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		c, err := Open(ctx, srv.URL, ClientOptions{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return h, c
	}
	site, siteClient := serve(st)
	rack, rackClient := serve(siteClient)
	if data, _, err := rackClient.GetRef(ctx, "meta/head"); err != nil || string(data) != "v1" {
		t.Fatalf("ref read: %q %v", data, err)
	}
	st.down.Store(true)
	if data, _, err := rackClient.GetRef(ctx, "meta/head"); err != nil || string(data) != "v1" {
		t.Fatalf("ref read through two layers with the store down: %q %v; want the last value v1", data, err)
	}
	if n, down := rackClient.Upstream(); n != 1 || !down {
		t.Fatalf("client of the front layer: %d stale answers, store down %v; want 1, true", n, down)
	}
	if s := rack.Stats(); s.StaleRefs != 1 || s.StoreDown {
		t.Fatalf("front layer %+v: want 1 stale answer passed on, its own store (the site serve) not down", s)
	}
	wantHealth(t, siteClient, site, false, ReasonStoreFails+" (last: store unreachable)")
	wantHealth(t, rackClient, rack, false, blockstore.ReasonStoreDown)

	st.down.Store(false)
	if _, _, err := rackClient.GetRef(ctx, "meta/head"); err != nil {
		t.Fatal(err)
	}
	if n, down := rackClient.Upstream(); n != 1 || down {
		t.Fatalf("client of the front layer after a fresh answer: %d stale, store down %v; want 1, false", n, down)
	}
	wantHealth(t, siteClient, site, true, "")
	wantHealth(t, rackClient, rack, true, "")
}
