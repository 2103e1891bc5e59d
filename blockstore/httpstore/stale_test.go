package httpstore

import (
	"context"
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
}
