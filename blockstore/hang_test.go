package blockstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// deafStore's Get blocks until the test ends, whatever its context says:
// a read stuck in the kernel (a hung NFS server, a dead disk).
type deafStore struct {
	Store
	release chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (s *deafStore) Get(ctx context.Context, loc Locator, dst []byte) (int, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return 0, errors.New("released")
}

func newDeafStore(t *testing.T, blocks ...[]byte) *deafStore {
	s := &deafStore{Store: newMemStore(blocks...), release: make(chan struct{}), entered: make(chan struct{})}
	t.Cleanup(func() { close(s.release) })
	return s
}

// within fails the test unless fn returns within d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// A store read that ignores its context is abandoned at FetchTimeout: the
// Get fails with DeadlineExceeded in time, Close does not wait for the
// read, and the memory stays accounted until the read returns.
func TestPoolFetchTimeoutDeafStore(t *testing.T) {
	blk := testBlocks(1, 4096)[0]
	s := newDeafStore(t, blk)
	const timeout = 200 * time.Millisecond
	p := NewPool(s, PoolConfig{FetchTimeout: timeout})
	var err error
	within(t, timeout+5*time.Second, "Get of a hung block", func() {
		_, err = p.Get(context.Background(), LocatorOf(blk))
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get: %v, want DeadlineExceeded", err)
	}
	if st := p.Stats(); st.Hung != 1 || st.BytesHeld != int64(len(blk)) {
		t.Fatalf("stats %+v: want 1 hung read holding %d bytes", st, len(blk))
	}
	within(t, 5*time.Second, "Close with a hung read", p.Close)
}

// With no FetchTimeout, Close still ends a fetch stuck in the store, and
// its waiter gets an error.
func TestPoolCloseHungFetch(t *testing.T) {
	blk := testBlocks(1, 4096)[0]
	s := newDeafStore(t, blk)
	p := NewPool(s, PoolConfig{})
	ch := getAsync(context.Background(), p, LocatorOf(blk))
	<-s.entered
	within(t, 5*time.Second, "Close with a hung read", p.Close)
	r := <-ch
	if r.err == nil {
		t.Fatal("Get of a hung block succeeded")
	}
}

// A pool does not pile up goroutines on a hung store: past maxHung
// abandoned reads, fetches fail at once with ErrBusy, and the hung reads
// keep their memory accounted for.
func TestPoolHungBound(t *testing.T) {
	blocks := testBlocks(4*maxHung, 512)
	s := newDeafStore(t, blocks...)
	p := NewPool(s, PoolConfig{FetchTimeout: 5 * time.Millisecond})
	defer p.Close()
	i := 0
	// A fetch whose deadline passes before its read starts abandons
	// nothing, hence the loop.
	for ; p.Stats().Hung < maxHung && i < len(blocks); i++ {
		if _, err := p.Get(context.Background(), LocatorOf(blocks[i])); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get %d: %v, want DeadlineExceeded", i, err)
		}
	}
	if i == len(blocks) {
		t.Fatalf("only %d reads hung after %d Gets", p.Stats().Hung, i)
	}
	if _, err := p.Get(context.Background(), LocatorOf(blocks[i])); !errors.Is(err, ErrBusy) {
		t.Fatalf("Get past the bound: %v, want ErrBusy", err)
	}
	if st := p.Stats(); st.Hung != maxHung || st.BytesHeld != maxHung*512 {
		t.Fatalf("stats %+v: want %d hung reads holding their memory", st, maxHung)
	}
}

// mkfifoBlock replaces block loc's file in d by a FIFO nobody writes.
func mkfifoBlock(t *testing.T, d *DirStore, loc Locator) {
	t.Helper()
	path := d.path(loc.Hash)
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A FIFO where a block file should be (opening it for reading would wait
// for a writer forever) is refused at once as corrupt, through Get, Map
// and the pool.
func TestDirFIFOBlock(t *testing.T) {
	d := newDir(t)
	blk := testBlocks(1, 4096)[0]
	loc := putBlocks(t, d, [][]byte{blk})[0]
	mkfifoBlock(t, d, loc)
	within(t, 5*time.Second, "reads of a FIFO block", func() {
		if _, err := d.Get(context.Background(), loc, make([]byte, loc.Size)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Get: %v, want ErrCorrupt", err)
		}
		if _, err := d.Map(context.Background(), loc); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Map: %v, want ErrCorrupt", err)
		}
		p := NewPool(d, PoolConfig{FetchTimeout: time.Second})
		if _, err := p.Get(context.Background(), loc); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Pool.Get: %v, want ErrCorrupt", err)
		}
		p.Close()
	})
}

// A block file written in place after the pool mapped and verified it is
// never served as the new bytes: the pool notices the change, maps and
// verifies afresh, and fails (ErrCorrupt); once the right bytes are back,
// it serves them again.
func TestPoolMappedFileChanged(t *testing.T) {
	d := newDir(t)
	blk := testBlocks(1, 64<<10)[0]
	loc := putBlocks(t, d, [][]byte{blk})[0]
	p := NewPool(d, PoolConfig{})
	defer p.Close()
	get := func() ([]byte, error) {
		b, err := p.Get(context.Background(), loc)
		if err != nil {
			return nil, err
		}
		defer b.Release()
		return bytes.Clone(b.Bytes()), nil
	}
	if got, err := get(); err != nil || !bytes.Equal(got, blk) {
		t.Fatalf("first read: %v", err)
	}
	if p.Stats().Mapped != 1 {
		t.Fatal("block not mapped")
	}
	write := func(data []byte) {
		t.Helper()
		path := d.path(loc.Hash)
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(data, 1000); err != nil {
			t.Fatal(err)
		}
	}
	write([]byte("evil"))
	got, err := get()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read after an in-place write: %v (right bytes: %v), want ErrCorrupt", err, bytes.Equal(got, blk))
	}
	if st := p.Stats(); st.Changed != 1 || st.VerifyFailures != 1 {
		t.Fatalf("stats %+v: want 1 changed, 1 verify failure", st)
	}
	write(blk[1000:1004])
	if got, err := get(); err != nil || !bytes.Equal(got, blk) {
		t.Fatalf("read once the bytes are back: %v", err)
	}
	// A change of metadata alone (the chmod above, a hard link) costs one
	// more mapping and hash, and still serves.
	if err := os.Chmod(d.path(loc.Hash), 0o444); err != nil {
		t.Fatal(err)
	}
	if got, err := get(); err != nil || !bytes.Equal(got, blk) {
		t.Fatalf("read after chmod: %v", err)
	}
}
