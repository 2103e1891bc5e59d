package mount_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"blockfs/blockstore"
	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/internal/testsvc"
)

func TestMain(m *testing.M) { fstest.Main(m) }

func TestMountEndToEnd(t *testing.T) {
	testsvc.RequireFUSE(t)
	src := fstest.SampleTree(t)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/data", chunker.Config{})
	tm := fstest.MountStore(t, store, mount.Options{})
	mnt := tm.Path("data")

	t.Run("find and cmp every file", func(t *testing.T) { fstest.CmpTrees(t, src, mnt) })
	t.Run("cat", func(t *testing.T) {
		want, _ := os.ReadFile(filepath.Join(src, "big.bin"))
		if got := fstest.Sh(t, "cat", filepath.Join(mnt, "big.bin")); got != string(want) {
			t.Fatal("cat big.bin differs")
		}
	})
	t.Run("ls -l modes sizes mtimes", func(t *testing.T) {
		for _, rel := range []string{"big.bin", "empty", "software/bin/align.sh", "a/b/c", "link", "dangling"} {
			format := "%A %s %Y"
			if rel == "a/b/c" {
				format = "%A %Y" // directory sizes are the local filesystem's business
			}
			want := fstest.Sh(t, "stat", "-c", format, filepath.Join(src, rel))
			got := fstest.Sh(t, "stat", "-c", format, filepath.Join(mnt, rel))
			if got != want {
				t.Errorf("%s: stat %q, want %q", rel, got, want)
			}
		}
		if out := fstest.Sh(t, "ls", "-l", mnt); !strings.Contains(out, "big.bin") || !strings.Contains(out, "-> a/b/c/deep.txt") {
			t.Errorf("ls -l:\n%s", out)
		}
	})
	t.Run("symlinks", func(t *testing.T) {
		if got := strings.TrimSpace(fstest.Sh(t, "readlink", filepath.Join(mnt, "link"))); got != "a/b/c/deep.txt" {
			t.Errorf("readlink = %q", got)
		}
		if got := fstest.Sh(t, "cat", filepath.Join(mnt, "link")); got != "deep\n" {
			t.Errorf("cat through link = %q", got)
		}
		if got := strings.TrimSpace(fstest.Sh(t, "readlink", filepath.Join(mnt, "dangling"))); got != "/nonexistent/target" {
			t.Errorf("dangling = %q", got)
		}
	})
	t.Run("random preads", func(t *testing.T) {
		data, _ := os.ReadFile(filepath.Join(src, "big.bin"))
		r := fstest.RandomBytes(7, 64*16)
		var spec strings.Builder
		h := sha256.New()
		for i := 0; i < 64; i++ {
			off := int64(r[i*16])<<16 | int64(r[i*16+1])<<8 | int64(r[i*16+2])
			off = off * int64(len(data)) >> 24
			n := 1 + (int(r[i*16+3])<<8|int(r[i*16+4]))*40
			fmt.Fprintf(&spec, "%d:%d ", off, n)
			h.Write(data[off:min(int64(len(data)), off+int64(n))])
		}
		got := fstest.RunHelper(t, "pread", filepath.Join(mnt, "big.bin"), "BLOCKFS_OFFSETS="+spec.String())
		if want := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Fatalf("pread digest %s, want %s", got, want)
		}
	})
	t.Run("mmap", func(t *testing.T) {
		for _, rel := range []string{"big.bin", "reference/genome.fa", "empty"} {
			data, _ := os.ReadFile(filepath.Join(src, rel))
			sum := sha256.Sum256(data)
			if got := fstest.RunHelper(t, "mmap", filepath.Join(mnt, rel)); got != hex.EncodeToString(sum[:]) {
				t.Errorf("mmap %s digest %s", rel, got)
			}
		}
	})
	t.Run("read-only", func(t *testing.T) {
		info, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(info), "\n") {
			if f := strings.Fields(line); len(f) > 5 && f[4] == tm.Dir && !strings.HasPrefix(f[5], "ro,") {
				t.Errorf("mount options %s, want ro", f[5])
			}
		}
		if err := exec.Command("touch", filepath.Join(mnt, "new")).Run(); err == nil {
			t.Error("creating a file succeeded")
		}
		if _, err := os.OpenFile(filepath.Join(mnt, "big.bin"), os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
			t.Errorf("open for writing: %v, want EROFS", err)
		}
	})
	t.Run("xattrs", func(t *testing.T) {
		_, err := syscall.Getxattr(filepath.Join(mnt, "big.bin"), "user.x", make([]byte, 64))
		if !errors.Is(err, syscall.ENODATA) {
			t.Errorf("getxattr: %v, want ENODATA", err)
		}
		// Labels and ACLs are not kept by imports: the mount says it
		// does not support them, as a filesystem mounted without them.
		for _, name := range []string{"security.selinux", "system.posix_acl_access", "trusted.x"} {
			if _, err := syscall.Getxattr(filepath.Join(mnt, "big.bin"), name, make([]byte, 64)); !errors.Is(err, syscall.EOPNOTSUPP) {
				t.Errorf("getxattr %s: %v, want EOPNOTSUPP", name, err)
			}
		}
	})
	t.Run("stable inodes", func(t *testing.T) {
		a := fstest.Sh(t, "stat", "-c", "%i", filepath.Join(mnt, "big.bin"), filepath.Join(mnt, "a/b"))
		b := fstest.Sh(t, "stat", "-c", "%i", filepath.Join(mnt, "big.bin"), filepath.Join(mnt, "a/b"))
		if a != b || strings.Fields(a)[0] == strings.Fields(a)[1] {
			t.Errorf("inodes %q then %q", a, b)
		}
	})
	t.Run("stats file hidden but readable", func(t *testing.T) {
		if strings.Contains(fstest.Sh(t, "ls", "-a", tm.Dir), mount.StatsFileName) {
			t.Error("stats file listed")
		}
		st := tm.StatsViaFile(t)
		if st.Fuse.Opens == 0 || st.Fuse.Reads == 0 || st.Pool.Fetches == 0 || st.Fuse.Lookups == 0 {
			t.Errorf("stats not counting: %+v", st)
		}
		// No errors, no waits for memory: every Get was a hit, a shared
		// wait, or the one that started a fetch (prefetches start their own).
		if p := st.Pool; p.Errors != 0 || p.Busy != 0 || p.Gets != p.Hits+p.Shared+p.Fetches-p.Prefetches {
			t.Errorf("pool accounting does not add up: %+v", p)
		}
	})
}

// TestHerd is the cluster start-up pattern: 16 processes read 16 files with
// the same content (different inodes, so the page cache cannot merge them)
// while others read a 64 MiB file. The store must see exactly one read per
// unique block.
func TestHerd(t *testing.T) {
	testsvc.RequireFUSE(t)
	src := t.TempDir()
	same := fstest.RandomBytes(2, 8<<20+999)
	for i := range 16 {
		fstest.WriteFile(t, filepath.Join(src, fmt.Sprintf("input-%02d", i)), same, 0o644)
	}
	big := fstest.RandomBytes(3, 64<<20)
	fstest.WriteFile(t, filepath.Join(src, "big"), big, 0o644)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/herd", chunker.Config{})
	tm := fstest.MountStore(t, store, mount.Options{})

	unique := map[blockstore.Hash]bool{}
	for _, f := range []string{"/herd/input-00", "/herd/big"} {
		for _, l := range tm.BlocksOf(t, f) {
			unique[l.Hash] = true
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	read := func(p string, want []byte) {
		defer wg.Done()
		out, err := exec.Command("cat", p).Output()
		if err != nil {
			errs <- fmt.Errorf("cat %s: %w", p, err)
		} else if !bytes.Equal(out, want) {
			errs <- fmt.Errorf("%s: wrong bytes", p)
		}
	}
	for i := range 16 {
		wg.Add(1)
		go read(tm.Path(fmt.Sprintf("herd/input-%02d", i)), same)
	}
	for range 4 {
		wg.Add(1)
		go read(tm.Path("herd/big"), big)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if got := tm.Store.Gets(); got != int64(len(unique)) {
		t.Errorf("store saw %d reads, want one per unique block: %d", got, len(unique))
	}
	for h := range unique {
		if n := tm.Store.GetsOf(h); n != 1 {
			t.Errorf("block %s read %d times", h, n)
		}
	}
	st := tm.StatsViaFile(t)
	if st.Pool.Fetches != int64(len(unique)) {
		t.Errorf("stats fetches %d, want %d", st.Pool.Fetches, len(unique))
	}
	// Every kernel read of a block that was not the one fetch was a hit or a shared wait.
	if st.Pool.Hits+st.Pool.Shared < st.Pool.Gets-st.Pool.Fetches {
		t.Errorf("hits %d + shared %d do not cover gets %d - fetches %d", st.Pool.Hits, st.Pool.Shared, st.Pool.Gets, st.Pool.Fetches)
	}
	if st.Pool.Hits+st.Pool.Shared == 0 {
		t.Error("no hits or shared waits in a herd")
	}
	t.Logf("herd: %d unique blocks, pool %+v, fuse reads %d", len(unique), st.Pool, st.Fuse.Reads)
}

// TestSequentialReadOneFetchPerBlock: whatever size the reader's requests
// are, reading a file once fetches each block exactly once.
func TestSequentialReadOneFetchPerBlock(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := fstest.StoreWithFile(t, "/seq", fstest.RandomBytes(4, 64<<20), chunker.Config{})
	for _, bs := range []string{"4k", "128k", "1M", "3M"} {
		t.Run("bs="+bs, func(t *testing.T) {
			tm := fstest.MountStore(t, store, mount.Options{})
			fstest.Sh(t, "dd", "if="+tm.Path("seq/f"), "of=/dev/null", "bs="+bs, "status=none")
			blocks := tm.BlocksOf(t, "/seq/f")
			if got := tm.Store.Gets(); got != int64(len(blocks)) {
				t.Errorf("%d store reads for %d blocks", got, len(blocks))
			}
			for _, l := range blocks {
				if n := tm.Store.GetsOf(l.Hash); n != 1 {
					t.Errorf("block %s read %d times", l, n)
				}
			}
			if st := tm.Stats(); st.Fuse.Prefetches == 0 {
				t.Errorf("sequential read prefetched nothing: %+v", st.Fuse)
			}
		})
	}
}

// TestRandomReadsDoNotPrefetch: reads far apart never start readahead.
func TestRandomReadsDoNotPrefetch(t *testing.T) {
	testsvc.RequireFUSE(t)
	data := fstest.RandomBytes(5, 64<<20)
	store := fstest.StoreWithFile(t, "/r", data, chunker.Config{})
	tm := fstest.MountStore(t, store, mount.Options{})
	// 4 MiB slots visited so that consecutive reads are >= 8 MiB apart.
	var spec strings.Builder
	for _, slot := range []int{0, 8, 2, 10, 4, 12, 6, 14, 1, 9, 3, 11, 5, 13, 7, 15} {
		fmt.Fprintf(&spec, "%d:4096 ", slot<<22+12345)
	}
	fstest.RunHelper(t, "pread", tm.Path("r/f"), "BLOCKFS_OFFSETS="+spec.String())
	if st := tm.Stats(); st.Fuse.Prefetches != 0 || st.Pool.Prefetches != 0 {
		t.Errorf("random reads prefetched: fuse %d, pool %d", st.Fuse.Prefetches, st.Pool.Prefetches)
	}
}

// TestCorruptBlockGivesEIO: a block whose bytes do not match its hash fails
// the reads that need it, is counted, and the mount serves everything else.
func TestCorruptBlockGivesEIO(t *testing.T) {
	testsvc.RequireFUSE(t)
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "bad"), fstest.RandomBytes(6, 3<<20), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "good"), fstest.RandomBytes(8, 3<<20), 0o644)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/c", chunker.Config{})
	tm := fstest.MountStore(t, store, mount.Options{Logger: fstest.DiscardLogger()})
	victim := tm.BlocksOf(t, "/c/bad")[0].Hash.String()
	f := filepath.Join(store, "blocks", victim[:2], victim)
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0xff
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cat", tm.Path("c/bad")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Input/output error") {
		t.Fatalf("cat of a corrupt file: err %v, output %q", err, out[max(0, len(out)-200):])
	}
	want, _ := os.ReadFile(filepath.Join(src, "good"))
	if got := fstest.Sh(t, "cat", tm.Path("c/good")); got != string(want) {
		t.Error("good file differs after a corrupt one")
	}
	fstest.Sh(t, "ls", tm.Path("c"))
	st := tm.StatsViaFile(t)
	if st.Pool.VerifyFailures == 0 || st.Fuse.Errors == 0 {
		t.Errorf("corruption not counted: pool %+v fuse %+v", st.Pool, st.Fuse)
	}
}

func TestCheckMountpoint(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	fstest.WriteFile(t, file, nil, 0o644)
	for name, p := range map[string]string{"missing": filepath.Join(dir, "nope"), "not a directory": file} {
		if _, err := mount.CheckMountpoint(p, false); !errors.Is(err, mount.ErrMountpoint) || !strings.Contains(err.Error(), name[:4]) && name != "missing" {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := mount.CheckMountpoint("/proc", true); !errors.Is(err, mount.ErrMountpoint) || !strings.Contains(err.Error(), "already mounted") {
		t.Errorf("/proc: %v", err)
	}
	if _, err := mount.CheckMountpoint(dir, false); !errors.Is(err, mount.ErrMountpoint) || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty dir: %v, want refused", err)
	}
	if _, err := mount.CheckMountpoint(dir, true); err != nil {
		t.Errorf("non-empty dir allowed: %v", err)
	}
	if _, err := mount.CheckMountpoint(t.TempDir(), false); err != nil {
		t.Errorf("empty dir: %v", err)
	}
}

// TestReadaheadAfterSeek: a handle that reads a file sequentially, seeks
// back and reads it again gets readahead on the second pass too, and the
// prefetch window never exceeds a quarter of the pool.
func TestReadaheadAfterSeek(t *testing.T) {
	testsvc.RequireFUSE(t)
	data := fstest.RandomBytes(71, 24<<20)
	store := fstest.StoreWithFile(t, "/s", data, chunker.Config{})
	// A pool of 16 MiB: a quarter is 4 MiB, about 3 blocks of 1 MiB average.
	tm := fstest.MountStore(t, store, mount.Options{PoolSize: 16 << 20})
	f, err := os.Open(tm.Path("s/f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	readAll := func() {
		if _, err := f.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for {
			n, err := f.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatal("wrong bytes")
		}
	}
	readAll()
	first := tm.Stats().Fuse.Prefetches
	// Drop the kernel's cached pages so the second pass reaches the mount.
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot drop the page cache (needed under CI=true): %v", err)
		}
		t.Skipf("cannot drop the page cache: %v", err)
	}
	readAll()
	second := tm.Stats().Fuse.Prefetches - first
	if first == 0 || second == 0 {
		t.Errorf("prefetches: first pass %d, second pass %d", first, second)
	}
	if st := tm.Pool().Stats(); st.BytesHeld > st.MaxBytes {
		t.Errorf("pool holds %d of %d bytes", st.BytesHeld, st.MaxBytes)
	}
}

// TestReadaheadRunsAhead drives a handle's reads directly (no kernel
// readahead in between, so the reader's position is exact) and checks what
// gets fetched: a first read at offset 0 prefetches a quarter window at
// once; a proven run keeps Readahead fetches in flight, each finished one
// starting the next, until it is 2*Readahead blocks ahead of the reader;
// and a reader that stops reading does not make it go further.
func TestReadaheadRunsAhead(t *testing.T) {
	const bs = 256 << 10
	data := fstest.RandomBytes(72, 64*bs)
	store := fstest.StoreWithFile(t, "/ra", data, chunker.Config{Fixed: true, Avg: bs})
	tm := fstest.MountStore(t, store, mount.Options{Readahead: 4})
	blocks := tm.BlocksOf(t, "/ra/f")
	n, err := tm.Vol.Tree.Lookup("/ra/f")
	if err != nil {
		t.Fatal(err)
	}
	h := mount.NewFileHandle(tm.Mount, "/ra/f", n)
	read := func(off int64) {
		t.Helper()
		res, errno := h.Read(t.Context(), make([]byte, mount.MaxRead), off)
		if errno != 0 {
			t.Fatalf("read at %d: %v", off, errno)
		}
		got, _ := res.Bytes(make([]byte, mount.MaxRead))
		if !bytes.Equal(got, data[off:off+mount.MaxRead]) {
			t.Fatalf("wrong bytes at %d", off)
		}
		res.Done()
	}
	fetched := func(upTo int) {
		t.Helper()
		testsvc.WaitFor(t, "readahead to settle", func() bool {
			return tm.Pool().Stats().InFlight == 0 && tm.Store.Gets() >= int64(upTo)
		})
		for i, l := range blocks {
			want := int64(0)
			if i < upTo {
				want = 1
			}
			if got := tm.Store.GetsOf(l.Hash); got != want {
				t.Errorf("block %d fetched %d times, want %d (blocks 0..%d)", i, got, want, upTo-1)
			}
		}
	}
	// Blocks 0-3 read; a quarter window (1 in flight, 2 ahead): 4 and 5.
	read(0)
	fetched(6)
	// Blocks 4-7 read: the run is proven (2 MiB). 4 in flight at a time,
	// up to 8 blocks past block 7.
	read(mount.MaxRead)
	fetched(16)
	if st := tm.Stats(); st.Fuse.Prefetches != 10 {
		t.Errorf("%d blocks queued for readahead, want 10", st.Fuse.Prefetches)
	}
}

// TestReadsSpanningBlocksInASmallPool: with a pool that holds one block,
// a read across two blocks cannot hold both; it is copied block by block
// (counted), never waits for itself, and returns the right bytes.
func TestReadsSpanningBlocksInASmallPool(t *testing.T) {
	testsvc.RequireFUSE(t)
	src := t.TempDir()
	data := fstest.RandomBytes(6, 3<<20)
	fstest.WriteFile(t, filepath.Join(src, "f"), data, 0o644)
	store := filepath.Join(t.TempDir(), "store")
	// 768 KiB blocks, so 1 MiB reads span two of them.
	fstest.ImportInto(t, store, src, "/s", chunker.Config{Fixed: true, Avg: 768 << 10})
	tm := fstest.MountStore(t, store, mount.Options{PoolSize: 768 << 10, Readahead: -1})
	fstest.Sh(t, "cmp", filepath.Join(src, "f"), tm.Path("s/f"))
	st := tm.Stats()
	if st.Fuse.CopiedReads == 0 {
		t.Errorf("no read was copied in a one-block pool: %+v", st.Fuse)
	}
	if st.Pool.BuffersInUse != 0 || st.Pool.Waiters != 0 {
		t.Errorf("pool not idle after the reads: %+v", st.Pool)
	}

	// With room for both, the same reads hand over both buffers.
	tm = fstest.MountStore(t, store, mount.Options{PoolSize: 4 << 20, Readahead: -1})
	fstest.Sh(t, "cmp", filepath.Join(src, "f"), tm.Path("s/f"))
	if st := tm.Stats(); st.Fuse.CopiedReads != 0 {
		t.Errorf("%d reads copied with room for all their blocks", st.Fuse.CopiedReads)
	}
}
