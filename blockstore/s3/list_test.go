package s3_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/s3"
	"blockfs/blockstore/storetest"
	"blockfs/internal/testsvc"
)

// TestContractFanOut runs the Store contract with pages of 3 keys, so that
// every listing of more than 3 blocks goes through the parallel fan-out.
func TestContractFanOut(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	defer s3.SetListPageSize(3)()
	storetest.Run(t, func(t *testing.T) blockstore.Store { return open(t, m.NewBucket(t), "fan", config(m)) })
}

// TestListFanOut: a store larger than one page is listed by fan-out
// folder: every block exactly once, in exactly the requests the folders'
// sizes call for (one for the first page, then per folder not wholly in
// it: its remaining keys / page size + 1).
func TestListFanOut(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	const page = 5
	defer s3.SetListPageSize(page)()
	s := open(t, m.NewBucket(t), "", config(m))
	var keys []string
	want := map[blockstore.Locator]bool{}
	for i := range 400 {
		l := put(t, s, block(10_000+i, 1+i%13))
		want[l] = true
		keys = append(keys, l.Hash.String())
	}
	sort.Strings(keys)
	before := s.Stats().ListRequests
	got := map[blockstore.Locator]bool{}
	if err := s.List(context.Background(), func(l blockstore.Locator) error {
		if got[l] {
			t.Errorf("%v listed twice", l)
		}
		got[l] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d blocks, stored %d", len(got), len(want))
	}
	for l := range want {
		if !got[l] {
			t.Fatalf("%v not listed", l)
		}
	}
	if n, w := s.Stats().ListRequests-before, fanOutRequests(keys, page); n != w {
		t.Errorf("%d list requests, want %d", n, w)
	}
}

// fanOutRequests is the number of listing requests List makes for the
// sorted block names keys with pages of page keys.
func fanOutRequests(keys []string, page int) int64 {
	last := keys[page-1][:2]
	rest := map[string]int{} // folder -> keys after the first page
	for _, k := range keys[page:] {
		rest[k[:2]]++
	}
	n := int64(1)
	for i := range 256 {
		f := fmt.Sprintf("%02x", i)
		if f < last {
			continue
		}
		n += int64(rest[f]/page + 1)
	}
	return n
}

// TestDeleteBatchRequests: a batch of 2001 blocks is 3 DeleteObjects
// requests (1000 keys each at most), no HEADs, and leaves the others.
func TestDeleteBatchRequests(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	s := open(t, m.NewBucket(t), "d", config(m))
	var hs []blockstore.Hash
	for i := range 2001 {
		hs = append(hs, put(t, s, block(20_000+i, 1)).Hash)
	}
	keep := put(t, s, block(1, 9))
	before := s.Stats()
	if err := s.DeleteBatch(context.Background(), hs); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if d := after.DeleteRequests - before.DeleteRequests; d != 3 {
		t.Errorf("%d delete requests for 2001 blocks, want 3", d)
	}
	if after.HeadRequests != before.HeadRequests {
		t.Errorf("DeleteBatch made %d HEAD requests", after.HeadRequests-before.HeadRequests)
	}
	n := 0
	if err := s.List(context.Background(), func(l blockstore.Locator) error {
		if l != keep {
			t.Errorf("%v survived the batch", l)
		}
		n++
		return nil
	}); err != nil || n != 1 {
		t.Fatalf("after the batch: %d blocks listed, %v", n, err)
	}
}
