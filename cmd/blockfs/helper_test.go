package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/internal/testsvc"
)

func TestHelperArgs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"S M", "mount --store S --daemon -- M"},
		{"S M -o ro,pool_size=1GiB,allow_other,_netdev,nofail,x-systemd.automount,noauto,user,defaults,dev,suid",
			"mount --store S --daemon --pool-size=1GiB --allow-other -- M"},
		{"S M -n -s -o readahead=4,refresh=10s,fetch_timeout=1m,cache_dir=/var/cache/b,cache_size=20G,metrics=:9100,debug,log_file=/l,log_level=warn",
			"mount --store S --daemon --readahead=4 --refresh=10s --fetch-timeout=1m --cache-dir=/var/cache/b --cache-size=20G --metrics=:9100 --debug --log-file=/l --log-level=warn -- M"},
		{"S M -oro,foreground", "mount --store S -- M"},
		{"S M -o ro,nonempty", "mount --store S --daemon --allow-non-empty -- M"}, // fuse's own name for it
		{"S M -o ro,readdirplus=always", "mount --store S --daemon --readdirplus=always -- M"},
	} {
		got, err := mountHelperArgs(strings.Fields(c.in))
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%s:\n got %q %v\nwant %q", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"S M -o rw", "read-only file system"},
		{"S M -o ro,bogus=1", `unknown mount option "bogus=1"`},
		{"S M -o pool_size", "needs a value"},
		{"S M -o daemon", "unknown mount option"},
		{"S", "want STORE MOUNTPOINT"},
		{"S M -o", "-o needs options"},
		{"S M -x", "unknown mount helper flag -x"},
	} {
		if _, err := mountHelperArgs(strings.Fields(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.in, err, c.want)
		}
	}
}

// TestMountHelperExitCodes runs the binary the way mount.fuse3 does
// (`blockfs STORE MOUNTPOINT -o OPTS`): a refused option is a usage error
// (2), a store that is not there a failure (1) with the store's error.
func TestMountHelperExitCodes(t *testing.T) {
	mnt := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"/no/such/store", mnt, "-o", "ro"}, 1, "blockfs mount: store /no/such/store: no blockfs store"},
		{[]string{"/no/such/store", mnt, "-o", "rw"}, 2, "read-only file system"},
		{[]string{"/no/such/store", mnt, "-o", "ro,pool_size=12parsecs"}, 2, "not a size"},
	} {
		out, err := exec.Command(blockfsBin, c.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != c.code || !strings.Contains(string(out), c.want) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("blockfs %q: exit %d, %q; want %d and one line with %q", c.args, code, out, c.code, c.want)
		}
	}
}

// TestMountTypeFuseBlockfs runs the real mount(8) -t fuse.blockfs and an
// fstab line, through fuse3's mount.fuse3, which runs the type's subtype
// "blockfs" from the default PATH (mount(8) drops ours). So that the test
// installs nothing on the machine, it runs in a private mount namespace
// where a directory holding the test binary is bind-mounted over
// /usr/local/sbin, the first directory of that PATH.
func TestMountTypeFuseBlockfs(t *testing.T) {
	testsvc.RequireFUSE(t)
	requireTools(t, "mount.fuse3", "unshare")
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	bin := t.TempDir()
	if err := os.Symlink(blockfsBin, filepath.Join(bin, "blockfs")); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	log := filepath.Join(t.TempDir(), "mount.log")
	fstab := filepath.Join(t.TempDir(), "fstab")
	line := store + " " + mnt + " fuse.blockfs ro,_netdev,nofail,x-systemd.automount,pool_size=64MiB,log_file=" + log + " 0 0\n"
	if err := os.WriteFile(fstab, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	// Each mount must serve when mount(8) returns: the cat right after it
	// is the readiness check. The trap unmounts whatever a failure leaves,
	// which ends the daemon and with it the namespace.
	script := `set -e
bin=$1 store=$2 mnt=$3 fstab=$4
trap 'umount -l "$mnt" 2>/dev/null || true' EXIT
mount --bind "$bin" /usr/local/sbin
mount -t fuse.blockfs "$store" "$mnt" -o ro,pool_size=64MiB,log_level=debug,log_file=` + log + `
cat "$mnt/sample/README.txt"
grep " $mnt " /proc/self/mountinfo | grep -o 'fuse.blockfs blockfs:[^ ]* ro'
umount "$mnt"
if grep -q " $mnt " /proc/self/mountinfo; then echo "still mounted"; exit 1; fi
mount -T "$fstab" "$mnt"
cat "$mnt/sample/models/config.json" >/dev/null
umount "$mnt"
echo "fstab ok"
if mount -t fuse.blockfs /no/such/store "$mnt" -o ro 2>bad.err; then echo "bad store mounted"; exit 1; fi
cat bad.err
if mount -t fuse.blockfs "$store" "$mnt" 2>rw.err; then echo "mounted without ro"; exit 1; fi
cat rw.err
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", bin, store, mnt, fstab)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	readme, _ := os.ReadFile("../../testdata/sample/README.txt")
	s := string(out)
	if err != nil || !strings.HasPrefix(s, string(readme)) || !strings.Contains(s, "fuse.blockfs blockfs:"+store+" ro") ||
		!strings.Contains(s, "fstab ok") || !strings.Contains(s, "blockfs mount: store /no/such/store: no blockfs store") ||
		!strings.Contains(s, "option rw: blockfs is a read-only file system: give ro") {
		t.Fatalf("%v:\n%s", err, out)
	}
	// umount returns before a daemon has seen its end: wait for its last line.
	testsvc.WaitFor(t, "both daemons to log their end", func() bool {
		logged, _ := os.ReadFile(log)
		return strings.Count(string(logged), "msg=unmounted") == 2
	})
	if logged, _ := os.ReadFile(log); strings.Count(string(logged), "msg=serving") != 2 {
		t.Errorf("the daemons' log file:\n%s", logged)
	}
}

// requireTools skips a test where a system tool is missing, but fails it
// under CI=true (make deps installs them).
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required under CI=true (make deps installs it): %v", tool, err)
			}
			t.Skipf("%s not installed (make deps installs it)", tool)
		}
	}
}
