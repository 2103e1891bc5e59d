package mount_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/internal/testsvc"
)

// heldStore holds every Get until the test hands it a token on release
// (or closes release), announcing it on entered first.
type heldStore struct {
	blockstore.Store
	entered chan blockstore.Locator
	release chan struct{}
}

func (h *heldStore) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	h.entered <- loc
	select {
	case <-h.release:
		return h.Store.Get(ctx, loc, dst)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// buildC compiles testdata/NAME.c into a temporary binary.
func buildC(t *testing.T, name string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no C compiler (needed under CI=true): %v", err)
		}
		t.Skipf("no C compiler: %v", err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command(cc, "-O2", "-Wall", "-o", bin, filepath.Join("testdata", name+".c")).CombinedOutput(); err != nil {
		t.Fatalf("cc %s: %v\n%s", name, err, out)
	}
	return bin
}

// TestSignalStormNoEINTR: a C reader with an SA_RESTART signal handler
// reads a file while every block it waits for is held back until the
// kernel has interrupted the read with a signal. It must see no EINTR and
// the right bytes, as on a local disk. It reads O_DIRECT: the kernel
// interrupts only reads it waits for synchronously, and page-cache reads
// are that only when readahead is skipped (congestion) or failed, which a
// test cannot arrange reliably.
func TestSignalStormNoEINTR(t *testing.T) {
	testsvc.RequireFUSE(t)
	bin := buildC(t, "sigreader")
	// Blocks of one read each (the reader's 1 MiB), so that every held
	// Get is one kernel read to interrupt.
	const bs = mount.MaxRead
	data := fstest.RandomBytes(11, 6*bs+123)
	store := fstest.StoreWithFile(t, "/sig", data, chunker.Config{Fixed: true, Avg: bs})
	held := &heldStore{entered: make(chan blockstore.Locator, 64), release: make(chan struct{})}
	dir, m := mountWrapped(t, store, mount.Options{Readahead: -1, FetchTimeout: time.Minute},
		func(s blockstore.Store) blockstore.Store { held.Store = s; return held })
	t.Cleanup(func() { close(held.release) })

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-direct", filepath.Join(dir, "sig/f"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	interrupted := 0
	for done := false; !done; {
		select {
		case <-held.entered:
			// The reader waits for this block: signal it until the
			// kernel has interrupted the mount's read at least once.
			before := m.Stats().Fuse.Interrupts
			testsvc.WaitFor(t, "the kernel to interrupt a read", func() bool {
				if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
					return true // the reader is gone; see below
				}
				return m.Stats().Fuse.Interrupts > before
			})
			interrupted++
			held.release <- struct{}{}
		case err := <-exited:
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == 3 {
				t.Fatalf("reader got EINTR: %s", stderr.String())
			}
			if err != nil {
				t.Fatalf("reader: %v %s", err, stderr.String())
			}
			done = true
		}
	}
	if !bytes.Equal(stdout.Bytes(), data) {
		t.Fatalf("reader got %d bytes, not the file's %d", stdout.Len(), len(data))
	}
	if interrupted == 0 {
		t.Fatal("no block fetch was interrupted")
	}
	t.Logf("%d block waits interrupted, %d interrupts counted; reader: %s", interrupted, m.Stats().Fuse.Interrupts, stderr.String())
}

// TestKilledReaderLetGo: a reader SIGKILLed while its direct read waits
// for a block the store holds back exits at once, not after the fetch
// timeout: the kernel cannot let the process go before the mount answers,
// so the mount answers a read interrupted for a dying reader without
// waiting for the fetch. A reader that only gets a handled signal is still
// waited for (TestSignalStormNoEINTR).
func TestKilledReaderLetGo(t *testing.T) {
	testsvc.RequireFUSE(t)
	bin := buildC(t, "sigreader")
	const bs = mount.MaxRead
	store := fstest.StoreWithFile(t, "/k", fstest.RandomBytes(12, 2*bs), chunker.Config{Fixed: true, Avg: bs})
	held := &heldStore{entered: make(chan blockstore.Locator, 64), release: make(chan struct{})}
	const fetchTimeout = 10 * time.Minute
	dir, m := mountWrapped(t, store, mount.Options{Readahead: -1, FetchTimeout: fetchTimeout},
		func(s blockstore.Store) blockstore.Store { held.Store = s; return held })
	t.Cleanup(func() { close(held.release) })

	cmd := exec.Command(bin, "-direct", filepath.Join(dir, "k/f"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	<-held.entered // the reader's read waits for this block
	start := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(fetchTimeout / 2):
		t.Fatal("the killed reader did not exit while its block was held back")
	}
	if n := m.Stats().Fuse.KilledReads; n != 1 {
		t.Errorf("killed reads %d, want 1", n)
	}
	t.Logf("killed reader gone after %v", time.Since(start).Round(time.Millisecond))
}

// TestFatalPending reads SIGKILL out of a /proc status text.
func TestFatalPending(t *testing.T) {
	for _, c := range []struct {
		status string
		want   bool
	}{
		{"Name:\tcat\nSigPnd:\t0000000000000100\nShdPnd:\t0000000000000000\n", true},
		{"Name:\tcat\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n", false},
		{"Name:\tcat\nSigPnd:\t0000000000000400\n", false}, // SIGUSR1 only
		{"Name:\tcat\n", false},
		{"SigPnd:\tnot hex\n", false},
	} {
		if got := mount.FatalPending([]byte(c.status)); got != c.want {
			t.Errorf("fatalPending(%q) = %v, want %v", c.status, got, c.want)
		}
	}
}
