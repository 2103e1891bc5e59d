package limit

import (
	"context"
	"errors"
	"sync"
	"testing"

	"blockfs/blockstore"
	"blockfs/blockstore/storetest"
	"blockfs/internal/testsvc"
)

func newDir(t *testing.T) *blockstore.DirStore {
	d, err := blockstore.OpenDir(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestContract(t *testing.T) {
	newStore := func(t *testing.T) blockstore.Store { return New(newDir(t), Options{MaxConcurrent: 2}) }
	storetest.Run(t, newStore)
	storetest.RunRefs(t, newStore)
}

func TestCapabilities(t *testing.T) {
	d := newDir(t)
	if have := storetest.Capabilities(t, New(d, Options{}), d); len(have) == 0 {
		t.Fatal("a DirStore with no capabilities?")
	}
}

// TestBoundAndQueue: with 2 slots and a queue of 1, two Gets held in the
// store occupy the slots, a third waits in the queue, a fourth is refused
// with ErrBusy at once; once the store answers, the three get their bytes.
func TestBoundAndQueue(t *testing.T) {
	blocks := storetest.Blocks(1, 4, 1000)
	gate := storetest.NewGate(storetest.NewMem(blocks...))
	s := New(gate, Options{MaxConcurrent: 2, MaxQueue: 1})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	get := func(b []byte) {
		defer wg.Done()
		loc := blockstore.LocatorOf(b)
		dst := make([]byte, loc.Size)
		if _, err := s.Get(ctx, loc, dst); err != nil {
			errs <- err
		} else if blockstore.Sum(dst) != loc.Hash {
			errs <- errors.New("wrong bytes")
		}
	}
	wg.Add(2)
	go get(blocks[0])
	go get(blocks[1])
	<-gate.Entered
	<-gate.Entered
	wg.Add(1)
	go get(blocks[2])
	testsvc.WaitFor(t, "a queued Get", func() bool { return s.Stats().Queued == 1 })
	loc := blockstore.LocatorOf(blocks[3])
	if _, err := s.Get(ctx, loc, make([]byte, loc.Size)); !errors.Is(err, blockstore.ErrBusy) {
		t.Fatalf("Get past the queue: %v, want ErrBusy", err)
	}
	if st := s.Stats(); st.InService != 2 || st.Peak != 2 || st.Refused != 1 || st.Waits != 1 {
		t.Fatalf("stats %+v, want 2 in service, peak 2, 1 refused, 1 wait", st)
	}
	gate.Open()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := s.Stats(); st.InService != 0 || st.Queued != 0 || st.Peak != 2 {
		t.Fatalf("after: %+v", st)
	}
}

// A queued call whose context ends leaves the queue with the context's
// error.
func TestQueuedCanceled(t *testing.T) {
	blocks := storetest.Blocks(2, 2, 100)
	gate := storetest.NewGate(storetest.NewMem(blocks...))
	s := New(gate, Options{MaxConcurrent: 1})
	done := make(chan error, 1)
	go func() {
		loc := blockstore.LocatorOf(blocks[0])
		_, err := s.Get(context.Background(), loc, make([]byte, loc.Size))
		done <- err
	}()
	<-gate.Entered
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		loc := blockstore.LocatorOf(blocks[1])
		_, err := s.Get(ctx, loc, make([]byte, loc.Size))
		res <- err
	}()
	testsvc.WaitFor(t, "a queued Get", func() bool { return s.Stats().Queued == 1 })
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled queued Get: %v", err)
	}
	gate.Open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
