package mount_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"blockfs/fs/chunker"
	"blockfs/fs/importer"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"

	"golang.org/x/sys/unix"
)

// oddTree builds a source tree with the usual oddities and returns its
// path, and the relative paths of its special files (which are skipped).
func oddTree(t *testing.T) (string, []string) {
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	file := func(rel string, data []byte, mode os.FileMode, uid, gid int) {
		p := filepath.Join(src, rel)
		fstest.WriteFile(t, p, data, 0o644)
		must(os.Lchown(p, uid, gid))
		must(os.Chmod(p, mode))
	}
	dir := func(rel string, mode os.FileMode, uid, gid int) {
		p := filepath.Join(src, rel)
		must(os.MkdirAll(p, 0o755))
		must(os.Lchown(p, uid, gid))
		must(os.Chmod(p, mode))
	}
	must(os.MkdirAll(src, 0o755))
	dir("owned", 0o750, 1234, 5678)
	file("owned/secret", []byte("only 1001 reads this\n"), 0o600, 1001, 1002)
	file("owned/shared", []byte("group reads this\n"), 0o640, 1001, 5678)
	file("public", []byte("everyone\n"), 0o644, 1001, 1002)
	file("zero", []byte("nobody\n"), 0, 1001, 1002)
	dir("zerodir", 0o755, 0, 0)
	file("zerodir/inside", []byte("in a closed dir\n"), 0o644, 0, 0)
	must(os.Chmod(filepath.Join(src, "zerodir"), 0))
	file("setuid", []byte("#!/bin/sh\n"), 0o4755|os.ModeSetuid, 0, 0)
	must(os.Chmod(filepath.Join(src, "setuid"), 0o755|os.ModeSetuid))
	dir("sticky", 0o777, 0, 0)
	must(os.Chmod(filepath.Join(src, "sticky"), 0o777|os.ModeSticky))
	dir("setgid", 0o755, 0, 100)
	must(os.Chmod(filepath.Join(src, "setgid"), 0o2755|os.ModeSetgid))
	file("empty", nil, 0o644, 0, 0)
	file("sticky/empty2", nil, 0o600, 7, 8)

	// Hard links: three paths in two directories, one inode.
	file("hl/a", fstest.RandomBytes(5, 300<<10), 0o640, 1001, 1002)
	must(os.Link(filepath.Join(src, "hl/a"), filepath.Join(src, "hl/b")))
	dir("other", 0o755, 0, 0)
	must(os.Link(filepath.Join(src, "hl/a"), filepath.Join(src, "other/c")))

	// Extended attributes, including a file capability.
	file("xattr", []byte("tagged\n"), 0o755, 0, 0)
	must(unix.Lsetxattr(filepath.Join(src, "xattr"), "user.mime_type", []byte("text/plain"), 0))
	must(unix.Lsetxattr(filepath.Join(src, "xattr"), "user.empty", nil, 0))
	must(unix.Lsetxattr(filepath.Join(src, "owned"), "user.project", []byte("cryo-em"), 0))
	if out, err := exec.Command("setcap", "cap_net_raw+ep", filepath.Join(src, "xattr")).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v %s", err, out)
	}

	// A sparse file: data, an 8 MiB hole, data.
	sp, err := os.Create(filepath.Join(src, "sparse"))
	must(err)
	_, err = sp.Write(fstest.RandomBytes(6, 100<<10))
	must(err)
	_, err = sp.WriteAt([]byte("tail of a sparse file\n"), 9<<20)
	must(err)
	must(sp.Close())

	// Names: not UTF-8, a newline, 255 bytes.
	file("names/\xff\xfe latin1 \xe9", []byte("x\n"), 0o644, 0, 0)
	file("names/new\nline", []byte("y\n"), 0o644, 0, 0)
	file("names/"+strings.Repeat("n", 255), []byte("z\n"), 0o644, 0, 0)

	// Symlinks: relative, absolute, dangling.
	must(os.Symlink("hl/a", filepath.Join(src, "rel-link")))
	must(os.Symlink("/etc/hostname", filepath.Join(src, "abs-link")))
	must(os.Symlink("no/such/thing", filepath.Join(src, "dangling")))
	must(os.Lchown(filepath.Join(src, "dangling"), 1001, 1002))

	// Special files, skipped.
	must(syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	must(err)
	must(syscall.Bind(fd, &syscall.SockaddrUnix{Name: filepath.Join(src, "sock")}))
	syscall.Close(fd)
	return src, []string{"fifo", "sock"}
}

// tarHash is the SHA-256 of a tar of dir with owners as numbers, modes,
// mtimes, hard links and xattrs (not atimes or ctimes, which a read-only
// copy cannot keep), in name order.
func tarHash(t *testing.T, dir string, exclude []string) (string, string) {
	t.Helper()
	args := []string{"--xattrs", "--xattrs-include=*", "--numeric-owner", "--sort=name", "--format=posix",
		"--pax-option=delete=atime,delete=ctime", "-cf", "-", "-C", dir}
	for _, e := range exclude {
		args = append(args, "--exclude=./"+e)
	}
	out, err := exec.Command("tar", append(args, ".")...).Output()
	if err != nil {
		t.Fatalf("tar of %s: %v", dir, err)
	}
	if d := os.Getenv("BLOCKFS_KEEP_TARS"); d != "" {
		os.WriteFile(filepath.Join(d, filepath.Base(dir)+".tar"), out, 0o644)
	}
	sum := sha256.Sum256(out)
	return hex.EncodeToString(sum[:]), tarListing(t, out)
}

func tarListing(t *testing.T, archive []byte) string {
	cmd := exec.Command("tar", "--xattrs", "--numeric-owner", "--full-time", "-tvf", "-")
	cmd.Stdin = strings.NewReader(string(archive))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tar -t: %v", err)
	}
	return string(out)
}

// TestFidelity imports a tree with owners, odd modes, hard links, xattrs,
// a sparse file, odd names and special files, mounts it, and compares:
// tar of source and mount hash the same, and so do stat, xattr lists and
// inode grouping.
func TestFidelity(t *testing.T) {
	testsvc.RequireFUSE(t)
	src, special := oddTree(t)
	store := filepath.Join(t.TempDir(), "store")
	var warnings []string
	st := fstest.ImportWith(t, store, volume.Options{}, src, "/t", importer.Options{
		Chunking: chunker.Config{Min: 64 << 10, Avg: 256 << 10, Max: 1 << 20},
		Warn:     func(err error) { warnings = append(warnings, err.Error()) },
	})
	if st.Skipped != 2 || len(warnings) != 2 || !strings.Contains(strings.Join(warnings, "\n"), "a FIFO") || !strings.Contains(strings.Join(warnings, "\n"), "a socket") {
		t.Errorf("skips: %d, warnings %q", st.Skipped, warnings)
	}
	if st.HoleBytes < 7<<20 || st.XattrsKept != 4 {
		t.Errorf("import kept %d hole bytes and %d xattrs, want >= 7 MiB and 4", st.HoleBytes, st.XattrsKept)
	}
	tm := fstest.MountStore(t, store, mount.Options{})
	mnt := tm.Path("t")

	t.Run("tar", func(t *testing.T) {
		want, wantList := tarHash(t, src, special)
		got, gotList := tarHash(t, mnt, nil)
		if got != want {
			t.Errorf("tar of the mount differs from tar of the source\nsource:\n%s\nmount:\n%s", wantList, gotList)
		}
	})
	t.Run("stat", func(t *testing.T) {
		for _, rel := range []string{"owned", "owned/secret", "zero", "zerodir", "setuid", "sticky", "setgid", "hl/a", "hl/b", "other/c", "xattr", "sparse", "empty", "dangling", "rel-link", "names/new\nline"} {
			format := "%A %u %g %h %s %Y %N"
			if fi, _ := os.Lstat(filepath.Join(src, rel)); fi.IsDir() {
				format = "%A %u %g %Y %N" // sizes and link counts of directories are the local filesystem's
			}
			want := strings.ReplaceAll(fstest.Sh(t, "stat", "-c", format, filepath.Join(src, rel)), src, "")
			got := strings.ReplaceAll(fstest.Sh(t, "stat", "-c", format, filepath.Join(mnt, rel)), mnt, "")
			if got != want {
				t.Errorf("%q: stat %q, want %q", rel, got, want)
			}
		}
	})
	t.Run("hard links are one inode", func(t *testing.T) {
		ino := func(p string) uint64 {
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			return fi.Sys().(*syscall.Stat_t).Ino
		}
		a, b, c, other := ino(tm.Path("t/hl/a")), ino(tm.Path("t/hl/b")), ino(tm.Path("t/other/c")), ino(tm.Path("t/public"))
		if a != b || a != c || a == other {
			t.Errorf("inodes a %d b %d c %d public %d: want a = b = c != public", a, b, c, other)
		}
		ls := fstest.Sh(t, "ls", "-li", tm.Path("t/hl"))
		if strings.Count(ls, " 3 1001 1002 ") != 2 {
			t.Errorf("ls -li of the links:\n%s", ls)
		}
	})
	t.Run("xattrs", func(t *testing.T) {
		for _, rel := range []string{"xattr", "owned", "public", "rel-link"} {
			if got, want := xattrDump(t, filepath.Join(mnt, rel)), xattrDump(t, filepath.Join(src, rel)); got != want {
				t.Errorf("%s: xattrs %q, want %q", rel, got, want)
			}
		}
		if got := fstest.Sh(t, "getcap", filepath.Join(mnt, "xattr")); !strings.Contains(got, "cap_net_raw=ep") {
			t.Errorf("getcap: %q", got)
		}
	})
	t.Run("holes", func(t *testing.T) {
		tm := fstest.MountStore(t, store, mount.Options{}) // nothing cached yet
		before := tm.Store.Gets()
		data, err := os.ReadFile(tm.Path("t/sparse"))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(src, "sparse"))
		if string(data) != string(want) {
			t.Fatal("sparse file reads back wrong")
		}
		stored := 0
		for _, l := range tm.BlocksOf(t, "/t/sparse") {
			if l.Hash != ([32]byte{}) {
				stored++
			}
		}
		if gets := tm.Store.Gets() - before; gets != int64(stored) || stored > 3 {
			t.Errorf("reading the sparse file fetched %d blocks; it has %d stored", gets, stored)
		}
		f, err := os.Open(tm.Path("t/sparse"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		hole, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE)
		if err != nil || hole < 100<<10 || hole > 2<<20 {
			t.Errorf("SEEK_HOLE from 0 = %d, %v: want the end of the first data", hole, err)
		}
		next, err := unix.Seek(int(f.Fd()), hole, unix.SEEK_DATA)
		if err != nil || next <= hole || next > 9<<20 {
			t.Errorf("SEEK_DATA from %d = %d, %v: want the tail's block", hole, next, err)
		}
		if _, err := unix.Seek(int(f.Fd()), int64(len(want)), unix.SEEK_DATA); err != unix.ENXIO {
			t.Errorf("SEEK_DATA at the end: %v, want ENXIO", err)
		}
		var s syscall.Stat_t
		if err := syscall.Stat(tm.Path("t/sparse"), &s); err != nil || s.Blocks*512 > 3<<20 {
			t.Errorf("st_blocks of the sparse file: %d (%v): holes should not count", s.Blocks, err)
		}
	})
}

// TestFidelityPermissions reads the mount as an unprivileged user (65534)
// through --allow-other: stored owners and modes are enforced, and the
// overrides change them as documented.
func TestFidelityPermissions(t *testing.T) {
	testsvc.RequireFUSE(t)
	src, _ := oddTree(t)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/t", chunker.Config{})
	nobody := uint32(65534)
	for _, c := range []struct {
		name     string
		opts     mount.Options
		readable map[string]bool
	}{
		{"as imported", mount.Options{}, map[string]bool{
			"public": true, "zero": false, "owned/secret": false, "owned/shared": false, "zerodir/inside": false, "hl/a": false}},
		{"--uid 65534 --file-mode 0400 --dir-mode 0500", mount.Options{UID: &nobody, FileMode: 0o400, DirMode: 0o500}, map[string]bool{
			"public": true, "zero": true, "owned/secret": true, "owned/shared": true, "zerodir/inside": true, "hl/a": true}},
		{"--umask 077", mount.Options{Umask: 0o077}, map[string]bool{
			"public": false, "zero": false, "owned/secret": false, "hl/a": false}},
		{"--gid 65534 --umask 027", mount.Options{GID: &nobody, Umask: 0o027}, map[string]bool{
			"public": true, "zero": false, "owned/secret": false, "owned/shared": true, "hl/a": true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.opts.AllowOther = true
			tm := fstest.MountStore(t, store, c.opts)
			for d := filepath.Dir(tm.Dir); d != "/tmp" && d != "/"; d = filepath.Dir(d) {
				if err := os.Chmod(d, 0o755); err != nil { // t.TempDir is 0700
					t.Fatal(err)
				}
			}
			for rel, want := range c.readable {
				cmd := exec.Command("cat", tm.Path("t/"+rel))
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
				out, err := cmd.CombinedOutput()
				if got := err == nil; got != want {
					t.Errorf("cat %s as 65534: readable %v, want %v", rel, got, want)
				}
				if err != nil && !strings.Contains(string(out), "Permission denied") {
					t.Errorf("cat %s as 65534: %s, want Permission denied", rel, out)
				}
			}
		})
	}
}

// xattrDump lists the attributes of p (not following symlinks) as
// "name=value" lines, in name order, as getfattr -d would.
func xattrDump(t *testing.T, p string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var lines []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		lines = append(lines, name+"="+hex.EncodeToString(v[:m]))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestIntrospectionXattrs: user.blockfs.* answer by name (block list,
// content identity, bytes cached, snapshot generation) and are not listed,
// so tar and rsync -X do not copy them.
func TestIntrospectionXattrs(t *testing.T) {
	testsvc.RequireFUSE(t)
	src := t.TempDir()
	data := fstest.RandomBytes(9, 3<<20)
	fstest.WriteFile(t, filepath.Join(src, "a"), data, 0o644)
	fstest.WriteFile(t, filepath.Join(src, "same"), data, 0o644)
	fstest.WriteFile(t, filepath.Join(src, "other"), []byte("other\n"), 0o644)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/d", chunker.Config{Min: 256 << 10, Avg: 512 << 10, Max: 1 << 20})
	tm := fstest.MountStore(t, store, mount.Options{})
	get := func(rel, name string) string {
		t.Helper()
		buf := make([]byte, 64<<10)
		n, err := unix.Getxattr(tm.Path("d/"+rel), name, buf)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", rel, name, err)
		}
		return string(buf[:n])
	}
	blocks := tm.BlocksOf(t, "/d/a")
	lines := strings.Split(strings.TrimSuffix(get("a", "user.blockfs.blocks"), "\n"), "\n")
	if len(lines) != len(blocks) || !strings.HasPrefix(lines[0], blocks[0].Hash.String()+" 0 ") {
		t.Errorf("user.blockfs.blocks: %q for %d blocks", lines, len(blocks))
	}
	n, err := tm.Vol.Tree.Lookup("/d/a")
	if err != nil {
		t.Fatal(err)
	}
	if h := get("a", "user.blockfs.hash"); h != mount.ContentHash(n) || h != get("same", "user.blockfs.hash") || h == get("other", "user.blockfs.hash") {
		t.Errorf("user.blockfs.hash: a %s, same %s, other %s", h, get("same", "user.blockfs.hash"), get("other", "user.blockfs.hash"))
	}
	if c := get("a", "user.blockfs.cached"); c != "0" {
		t.Errorf("user.blockfs.cached before any read: %s", c)
	}
	if _, err := os.ReadFile(tm.Path("d/a")); err != nil {
		t.Fatal(err)
	}
	if c := get("a", "user.blockfs.cached"); c != fmt.Sprint(len(data)) {
		t.Errorf("user.blockfs.cached after reading it all: %s, want %d", c, len(data))
	}
	if s := get("a", "user.blockfs.snapshot"); s != fmt.Sprint(tm.Vol.MetaStats().Generation) || s == "0" {
		t.Errorf("user.blockfs.snapshot %s, generation %d", s, tm.Vol.MetaStats().Generation)
	}
	if s := get("", "user.blockfs.snapshot"); s == "" {
		t.Error("no snapshot on a directory")
	}
	if l := xattrDump(t, tm.Path("d/a")); l != "" {
		t.Errorf("listxattr shows %q; the introspection attributes must not be listed", l)
	}
}
