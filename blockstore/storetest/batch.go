package storetest

import (
	"context"
	"testing"

	"blockfs/blockstore"
)

// testDeleteBatch, on a store that is a BatchDeleter: a batch deletes
// exactly its blocks, missing ones included without error, an empty batch
// is a no-op, and a batch larger than one request's worth (S3 takes 1000
// keys a request) deletes every block.
func testDeleteBatch(t *testing.T, s blockstore.Store) {
	bd, ok := blockstore.As[blockstore.BatchDeleter](s)
	if !ok {
		t.Skipf("%T has no batch delete", s)
	}
	ctx := context.Background()
	const n = 1205
	locs := make([]blockstore.Locator, n)
	for i := range locs {
		locs[i] = put(t, s, Block(uint64(5000+i), 1+i%7))
	}
	kept := locs[n-5:]
	var doomed []blockstore.Hash
	for _, l := range locs[:n-5] {
		doomed = append(doomed, l.Hash)
	}
	never := blockstore.LocatorOf(Block(99999, 3)).Hash // never stored
	doomed = append(doomed, never, doomed[0])           // missing and repeated: no error
	if err := bd.DeleteBatch(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if err := bd.DeleteBatch(ctx, doomed); err != nil {
		t.Fatalf("DeleteBatch of %d blocks: %v", len(doomed), err)
	}
	got := map[blockstore.Locator]bool{}
	if err := s.List(ctx, func(l blockstore.Locator) error { got[l] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[blockstore.Locator]bool{}
	for i, l := range kept {
		want[l] = true
		mustGet(t, s, l, Block(uint64(5000+n-5+i), 1+(n-5+i)%7))
	}
	if !sameSet(got, want) {
		t.Fatalf("after DeleteBatch List gives %d blocks, want the %d not in the batch", len(got), len(want))
	}
	mustHave(t, s, locs[0].Hash, false)
	if err := bd.DeleteBatch(ctx, doomed[:10]); err != nil {
		t.Fatalf("deleting again what is gone: %v", err)
	}
}
