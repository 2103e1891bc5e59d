package httpstore

import (
	"context"
	"errors"
	"testing"

	"blockfs/blockstore"
)

// TestFixedRefs: a ref the server fixes is answered from its options, not
// the store (which lacks it), and cannot be written: a PUT, even a create,
// is a conflict and the store is left without it; other refs go through.
func TestFixedRefs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, ServerOptions{Token: "tok", FixedRefs: map[string][]byte{"blockfs-store": []byte("marker\n")}}, false)
	c := e.client(t, ClientOptions{Token: "tok"})
	b, v, err := c.GetRef(ctx, "blockfs-store")
	if err != nil || string(b) != "marker\n" || v != fixedVersion {
		t.Fatalf("GetRef = %q %q %v", b, v, err)
	}
	if _, err := c.PutRef(ctx, "blockfs-store", []byte("other\n"), ""); !errors.Is(err, blockstore.ErrConflict) {
		t.Errorf("PutRef of the fixed ref: %v, want a conflict", err)
	}
	if _, _, err := e.dir.GetRef(ctx, "blockfs-store"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("the store got the fixed ref: %v", err)
	}
	if _, err := c.PutRef(ctx, "meta/head", []byte("x"), ""); err != nil {
		t.Fatal(err)
	}
	if b, _, err := e.dir.GetRef(ctx, "meta/head"); err != nil || string(b) != "x" {
		t.Errorf("another ref: %q %v", b, err)
	}
	if _, _, err := c.GetRef(ctx, "meta/head"); err != nil {
		t.Fatal(err)
	}
	if st := e.h.Stats(); st.RefGets != 2 || st.FixedRefGets != 1 {
		t.Errorf("stats: %d ref gets, %d of them fixed; want 2 and 1", st.RefGets, st.FixedRefGets)
	}
}
