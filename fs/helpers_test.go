package fs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/internal/testsvc"
)

// TestMain doubles as a small helper program: the end-to-end tests run it as
// a separate process to pread or mmap files in the mount, as a job would.
func TestMain(m *testing.M) {
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

// runHelper runs this test binary as a helper process.
func runHelper(t *testing.T, mode, file string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", file)
	cmd.Env = append(append(os.Environ(), "BLOCKFS_TEST_HELPER="+mode), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s %s: %v\n%s", mode, file, err, out)
	}
	return strings.TrimSpace(string(out))
}

// requireFUSE skips where FUSE cannot be mounted, but fails under CI, where
// a missing /dev/fuse must never pass silently.
func requireFUSE(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "mounting with DirectMount needs root"
	} else if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		why = "no usable /dev/fuse: " + err.Error()
	} else {
		f.Close()
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("FUSE is required under CI=true: %s", why)
	}
	t.Skip(why)
}

// sh runs a command in its own process and returns its stdout; it fails the
// test on a non-zero exit.
func sh(t *testing.T, name string, args ...string) string {
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

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
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

func writeFile(t testing.TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

// importInto imports src into a new or existing store at dir under dest.
func importInto(t testing.TB, store, src, dest string, cfg chunker.Config) ImportStats {
	t.Helper()
	return importWith(t, store, OpenOptions{}, src, dest, ImportOptions{Chunking: cfg})
}

// importWith imports src into the store spec under dest.
// storeWithFile imports data as the file dir/f (dir is absolute, e.g.
// "/seq") into a new directory store and returns the store's path.
func storeWithFile(t testing.TB, dir string, data []byte, cfg chunker.Config) string {
	t.Helper()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), data, 0o644)
	store := filepath.Join(t.TempDir(), "store")
	importInto(t, store, src, dir, cfg)
	return store
}

func importWith(t testing.TB, spec string, oo OpenOptions, src, dest string, iopts ImportOptions) ImportStats {
	t.Helper()
	oo.Create = true
	vol, err := Open(context.Background(), spec, oo)
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	im, err := NewImporter(vol, iopts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := im.Import(context.Background(), src, dest)
	if err != nil {
		t.Fatalf("import %s: %v", src, err)
	}
	return st
}

// testMount is a real FUSE mount of a store whose block reads are counted.
type testMount struct {
	*Mount
	dir   string
	store *blockstore.CountingStore
}

func mountStore(t *testing.T, store string, opts MountOptions) *testMount {
	t.Helper()
	return mountWith(t, store, OpenOptions{}, opts)
}

// mountWith mounts the store spec as a fresh node would: a new Volume with
// an empty private metadata directory.
func mountWith(t *testing.T, spec string, oo OpenOptions, opts MountOptions) *testMount {
	t.Helper()
	requireFUSE(t)
	vol, err := Open(context.Background(), spec, oo)
	if err != nil {
		t.Fatal(err)
	}
	counting := blockstore.NewCountingStore(vol.Blocks)
	vol.Blocks = counting
	dir := t.TempDir()
	m, err := Serve(dir, vol, opts)
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
	return &testMount{Mount: m, dir: dir, store: counting}
}

func (tm *testMount) path(p string) string { return filepath.Join(tm.dir, p) }

// statsViaFile reads the mount's stats the way `blockfs stats` does: by
// reading the hidden file from another process.
func (tm *testMount) statsViaFile(t *testing.T) Stats {
	t.Helper()
	var st Stats
	if err := json.Unmarshal([]byte(sh(t, "cat", tm.path(StatsFileName))), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// blocksOf lists the locators of a stored file.
func (tm *testMount) blocksOf(t *testing.T, p string) []blockstore.Locator {
	t.Helper()
	n, err := tm.vol.Tree.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	return n.Blocks
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// cmpTrees compares every regular file and the file list of src with dir,
// using separate processes.
func cmpTrees(t *testing.T, src, dir string) {
	t.Helper()
	want := sh(t, "sh", "-c", "cd "+src+" && find . | sort")
	if got := sh(t, "sh", "-c", "cd "+dir+" && find . | sort"); got != want {
		t.Fatalf("find differs:\n got %q\nwant %q", got, want)
	}
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		sh(t, "cmp", p, filepath.Join(dir, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
