// Package fstest holds what the tests of the filesystem packages (volume,
// importer, mount and the CLI's) share: importing a source tree into a
// store, mounting it for real, helper processes that read the mount as a
// job would, and deterministic test data.
package fstest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/s3"
	"blockfs/blockstore/storetest"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// Main is the TestMain of packages whose tests use RunHelper or the shared
// MinIO: the test binary doubles as a small helper program, run as a
// separate process to pread or mmap files in the mount, as a job would.
//
//	func TestMain(m *testing.M) { fstest.Main(m) }
func Main(m *testing.M) {
	switch os.Getenv("BLOCKFS_TEST_HELPER") {
	case "":
		os.Exit(testsvc.RunShared(m))
	case "pread":
		os.Exit(helperPread(os.Args[len(os.Args)-1], os.Getenv("BLOCKFS_OFFSETS")))
	case "mmap":
		os.Exit(helperMmap(os.Args[len(os.Args)-1]))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper")
		os.Exit(3)
	}
}

// helperPread reads "off:len" ranges and prints the SHA-256 of their concatenation.
func helperPread(file, ranges string) int {
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	h := sha256.New()
	for _, r := range strings.Fields(ranges) {
		o, l, _ := strings.Cut(r, ":")
		off, _ := strconv.ParseInt(o, 10, 64)
		n, _ := strconv.Atoi(l)
		buf := make([]byte, n)
		got, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		h.Write(buf[:got])
	}
	fmt.Println(hex.EncodeToString(h.Sum(nil)))
	return 0
}

// helperMmap maps the whole file and prints its SHA-256.
func helperMmap(file string) int {
	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Size() == 0 {
		fmt.Println(hex.EncodeToString(sha256.New().Sum(nil)))
		return 0
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sum := sha256.Sum256(data)
	fmt.Println(hex.EncodeToString(sum[:]))
	return 0
}

// RunHelper runs this test binary as a helper process (see Main): mode
// "pread" prints the SHA-256 of the ranges in $BLOCKFS_OFFSETS ("off:len
// ..."), "mmap" that of the whole file.
func RunHelper(t *testing.T, mode, file string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", file)
	cmd.Env = append(append(os.Environ(), "BLOCKFS_TEST_HELPER="+mode), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s %s: %v\n%s", mode, file, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Sh runs a command in its own process and returns its stdout; it fails the
// test on a non-zero exit.
func Sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v %s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// RandomBytes returns n deterministic pseudo-random bytes.
func RandomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// WriteFile writes data to p with mode, creating its directory.
func WriteFile(t testing.TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

// ImportInto imports src into a new or existing directory store under dest.
func ImportInto(t testing.TB, store, src, dest string, cfg chunker.Config) importer.Stats {
	t.Helper()
	return ImportWith(t, store, volume.Options{}, src, dest, importer.Options{Chunking: cfg})
}

// StoreWithFile imports data as the file dir/f (dir is absolute, e.g.
// "/seq") into a new directory store and returns the store's path.
func StoreWithFile(t testing.TB, dir string, data []byte, cfg chunker.Config) string {
	t.Helper()
	src := t.TempDir()
	WriteFile(t, filepath.Join(src, "f"), data, 0o644)
	store := filepath.Join(t.TempDir(), "store")
	ImportInto(t, store, src, dir, cfg)
	return store
}

// ImportWith imports src into the store spec (created if need be) under dest.
func ImportWith(t testing.TB, spec string, oo volume.Options, src, dest string, iopts importer.Options) importer.Stats {
	t.Helper()
	oo.Create = true
	vol, err := volume.Open(context.Background(), spec, oo)
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	im, err := importer.New(vol, iopts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := im.Import(context.Background(), src, dest)
	if err != nil {
		t.Fatalf("import %s: %v", src, err)
	}
	return st
}

// Mount is a real FUSE mount of a store whose block reads are counted.
type Mount struct {
	*mount.Mount
	Dir   string // the mountpoint
	Vol   *volume.Volume
	Store *storetest.Counting
}

// MountStore mounts the directory store at store (see MountWith).
func MountStore(t *testing.T, store string, opts mount.Options) *Mount {
	t.Helper()
	return MountWith(t, store, volume.Options{}, opts)
}

// MountWith mounts the store spec as a fresh node would (as blockfs mount
// does): a new lazy Volume (metadata parts loaded on demand, or every
// segment ingested into an empty private log for a store without parts).
// The mount ends with the test.
func MountWith(t *testing.T, spec string, oo volume.Options, opts mount.Options) *Mount {
	t.Helper()
	return MountWrapped(t, spec, oo, opts, nil)
}

// MountWrapped is MountWith with the volume's block store wrapped by wrap
// (a gate, a delay, a fault) under the counting store, if wrap is set.
func MountWrapped(t *testing.T, spec string, oo volume.Options, opts mount.Options, wrap func(blockstore.Store) blockstore.Store) *Mount {
	t.Helper()
	testsvc.RequireFUSE(t)
	oo.Lazy = true
	vol, err := volume.Open(context.Background(), spec, oo)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		vol.Blocks = wrap(vol.Blocks)
	}
	counting := storetest.NewCounting(vol.Blocks)
	vol.Blocks = counting
	dir := t.TempDir()
	m, err := mount.Start(dir, vol, opts)
	if err != nil {
		vol.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		m.Wait()
		vol.Close()
	})
	return &Mount{Mount: m, Dir: dir, Vol: vol, Store: counting}
}

// Path is where tree path p is in the mount.
func (tm *Mount) Path(p string) string { return filepath.Join(tm.Dir, p) }

// StatsViaFile reads the mount's stats the way `blockfs stats` does: by
// reading the hidden file from another process.
func (tm *Mount) StatsViaFile(t *testing.T) mount.Stats {
	t.Helper()
	var st mount.Stats
	if err := json.Unmarshal([]byte(Sh(t, "cat", tm.Path(mount.StatsFileName))), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// BlocksOf lists the locators of a stored file.
func (tm *Mount) BlocksOf(t *testing.T, p string) []blockstore.Locator {
	t.Helper()
	n, err := tm.Vol.Tree.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	return n.Blocks
}

// DiscardLogger is a logger for mounts whose errors a test provokes.
func DiscardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// ReadBack reads a file's bytes out of the volume's store, verifying each
// block.
func ReadBack(t *testing.T, vol *volume.Volume, p string) []byte {
	t.Helper()
	n, err := vol.Tree.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	pool := blockstore.NewPool(vol.Blocks, blockstore.PoolConfig{})
	defer pool.Close()
	var out []byte
	for i, l := range n.Blocks {
		if tree.IsHole(l) {
			out = append(out, make([]byte, n.Len(i))...)
			continue
		}
		b, err := pool.Get(context.Background(), l)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, b.Bytes()[n.Off(i):n.Off(i)+n.Len(i)]...)
		b.Release()
	}
	return out
}

// SampleData is the repository's sample tree (testdata/sample).
func SampleData() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "sample")
}

// SampleTree builds a source tree: the repository's sample data plus a
// multi-block file, an empty file, a nested directory and symlinks.
func SampleTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("cp", "-a", SampleData(), src).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	WriteFile(t, filepath.Join(src, "big.bin"), RandomBytes(1, 20<<20+12345), 0o640)
	WriteFile(t, filepath.Join(src, "empty"), nil, 0o600)
	WriteFile(t, filepath.Join(src, "a/b/c/deep.txt"), []byte("deep\n"), 0o644)
	if err := os.Symlink("a/b/c/deep.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/target", filepath.Join(src, "dangling")); err != nil {
		t.Fatal(err)
	}
	return src
}

// CmpTrees compares every regular file and the file list of src with dir,
// using separate processes.
func CmpTrees(t *testing.T, src, dir string) {
	t.Helper()
	want := Sh(t, "sh", "-c", "cd "+src+" && find . | sort")
	if got := Sh(t, "sh", "-c", "cd "+dir+" && find . | sort"); got != want {
		t.Fatalf("find differs:\n got %q\nwant %q", got, want)
	}
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		Sh(t, "cmp", p, filepath.Join(dir, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// S3Options opens stores on the test MinIO through endpoint (MinIO itself
// or a toxiproxy in front of it), with short timeouts so faults resolve
// fast.
func S3Options(m *testsvc.MinIO, endpoint string) volume.Options {
	return volume.Options{Options: storeurl.Options{S3: &s3.Config{
		Endpoint: endpoint, AccessKey: m.AccessKey(), SecretKey: m.SecretKey(), PathStyle: true,
		RequestTimeout: 2 * time.Second, MaxAttempts: 3, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}}}
}
