package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// gatedFile is a source file whose reads wait until its gate is closed: a
// source as slow as the test wants, with no timing involved.
type gatedFile struct {
	gofs.MemRegularFile
	gate    <-chan struct{}
	reached chan<- struct{} // told once a read is waiting at the gate
}

func (f *gatedFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	select {
	case f.reached <- struct{}{}:
	default:
	}
	select {
	case <-f.gate:
	case <-ctx.Done():
		return nil, syscall.EINTR
	}
	return f.MemRegularFile.Read(ctx, fh, dest, off)
}

type gatedRoot struct {
	gofs.Inode
	files map[string]gofs.InodeEmbedder
}

func (r *gatedRoot) OnAdd(ctx context.Context) {
	for name, f := range r.files {
		r.AddChild(name, r.NewPersistentInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
	}
}

// mountGatedSource serves files free to read and gated ones, whose reads
// wait until the returned release is called.
func mountGatedSource(t *testing.T, free, gated map[string][]byte) (dir string, reached <-chan struct{}, release func()) {
	testsvc.RequireFUSE(t)
	gate := make(chan struct{})
	reach := make(chan struct{}, 1)
	root := &gatedRoot{files: map[string]gofs.InodeEmbedder{}}
	for n, d := range free {
		root.files[n] = &gofs.MemRegularFile{Data: d, Attr: fuse.Attr{Mode: 0o644}}
	}
	for n, d := range gated {
		root.files[n] = &gatedFile{MemRegularFile: gofs.MemRegularFile{Data: d, Attr: fuse.Attr{Mode: 0o644}}, gate: gate, reached: reach}
	}
	dir = t.TempDir()
	srv, err := gofs.Mount(dir, root, &gofs.Options{MountOptions: fuse.MountOptions{DirectMount: true, FsName: "gated", Logger: log.New(io.Discard, "", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	var once bool
	release = func() {
		if !once {
			once = true
			close(gate)
		}
	}
	t.Cleanup(func() {
		release()
		srv.Unmount()
	})
	return dir, reach, release
}

// TestImportCrashAfterIntervalPublish kills a real import of a few large
// files with SIGKILL once its first interval publish shows up in the store:
// the files it had finished are visible and verify, the one it was reading
// is absent, and the store is whole. Before the interval timer, an import
// of fewer files than a batch published nothing until its end.
func TestImportCrashAfterIntervalPublish(t *testing.T) {
	rnd := rand.New(rand.NewPCG(17, 22))
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	done := map[string][]byte{"a.bin": data(6 << 20), "b.bin": data(5 << 20)}
	src, reached, release := mountGatedSource(t, done, map[string][]byte{"c.bin": data(4 << 20)})

	store := filepath.Join(t.TempDir(), "store")
	cmd := exec.Command(blockfsBin, "import", "--quiet", "--store", store, "--publish-interval", "20ms", src, "/big")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("find", store).CombinedOutput()
			t.Logf("import stderr: %s\nstore: %s", stderr.String(), out)
		}
	})
	<-reached // the import is stuck in c.bin: it cannot finish

	// Poll the store's head ref; each time it changes, look at what it names.
	var last []byte
	testsvc.WaitFor(t, "a publish showing a.bin and b.bin", func() bool {
		head, err := os.ReadFile(filepath.Join(store, "blocks", "refs", "meta", "head"))
		if err != nil || bytes.Equal(head, last) {
			return false
		}
		last = head
		return visible(t, store, "/big/a.bin") && visible(t, store, "/big/b.bin")
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("import was not killed but ended: %v, %s", err, stderr.String())
	}
	release()

	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	for name, want := range done {
		got := readVolumeFile(t, vol, "/big/"+name)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes back, want its %d bytes", name, len(got), len(want))
		}
	}
	if _, err := vol.Tree.Lookup("/big/c.bin"); !errors.Is(err, tree.ErrNotExist) {
		t.Errorf("the file being read at the kill is visible: %v", err)
	}
	if code, out, serr := blockfs("verify", "--deep", "--store", store); code != 0 {
		t.Errorf("verify after the crash: exit %d, %s %s", code, out, serr)
	}
}

// visible reports whether a fresh look at the store shows p.
func visible(t *testing.T, store, p string) bool {
	vol, err := volume.Open(context.Background(), store, volume.Options{})
	if err != nil {
		t.Fatalf("opening the store mid-import: %v", err)
	}
	defer vol.Close()
	_, err = vol.Tree.Lookup(p)
	return err == nil
}

// readVolumeFile reads a file back from the store, verifying every block.
func readVolumeFile(t *testing.T, vol *volume.Volume, p string) []byte {
	t.Helper()
	n, err := vol.Tree.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	pool := blockstore.NewPool(vol.Blocks, blockstore.PoolConfig{})
	defer pool.Close()
	var out []byte
	for _, l := range n.Blocks {
		if tree.IsHole(l) {
			out = append(out, make([]byte, l.Size)...)
			continue
		}
		b, err := pool.Get(context.Background(), l)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, b.Bytes()...)
		b.Release()
	}
	return out
}
