package s3_test

import (
	"context"
	"testing"

	"blockfs/blockstore"
	"blockfs/internal/testsvc"
)

// TestPutHashedServerChecks: PutHashed does not hash the bytes itself, so
// the server must: a body that does not hash to the name it is put under
// (the signed x-amz-content-sha256) is refused and nothing is stored, and
// one that does is stored and reads back.
func TestPutHashedServerChecks(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	ctx := context.Background()
	s := open(t, m.NewBucket(t), "p", config(m))
	good, bad := block(11, 300_000), block(12, 300_000)
	h := blockstore.Sum(good)
	if err := s.PutHashed(ctx, h, bad); err == nil {
		t.Fatal("a body that does not hash to its name was accepted")
	}
	if has, err := s.Has(ctx, h); err != nil || has {
		t.Fatalf("after the refused put: has %v, %v", has, err)
	}
	if err := s.PutHashed(ctx, h, good); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(good))
	if n, err := s.Get(ctx, blockstore.Locator{Hash: h, Size: int64(len(good))}, buf); err != nil || n != len(good) {
		t.Fatalf("get: %d bytes, %v", n, err)
	}
}
