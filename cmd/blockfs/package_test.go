package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/internal/testsvc"
)

// TestPackage builds the .deb with `make package` (the pinned nfpm), checks
// what it holds, extracts it into a throw-away root and mounts with the
// installed files: in a private mount namespace the root's /usr/bin and
// /usr/sbin are overlaid on the machine's, so mount(8) finds the
// package's /sbin/mount.fuse.blockfs and mount.blockfs as if installed,
// and nothing is installed on the machine.
func TestPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nfpm and a package")
	}
	testsvc.RequireFUSE(t)
	requireTools(t, "make", "dpkg-deb", "unshare")
	dist := t.TempDir()
	if out, err := exec.Command("make", "-s", "-C", "../..", "package", "DIST="+dist, "BIN="+t.TempDir()).CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "blockfs_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("packages in %s: %v", dist, debs)
	}
	list, err := exec.Command("dpkg-deb", "-c", debs[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"./usr/bin/blockfs", "./usr/sbin/mount.fuse.blockfs -> ../bin/blockfs", "./usr/sbin/mount.blockfs -> ../bin/blockfs",
		"./usr/share/man/man8/blockfs.8", "./usr/share/bash-completion/completions/blockfs",
		"examples/fstab", "examples/systemd/data-reference.mount", "examples/systemd/data-reference.automount",
		"examples/systemd/blockfs-reference.service", "examples/autofs/auto.blockfs", "examples/autofs/blockfs.autofs",
		"./usr/share/doc/blockfs/operations.md",
	} {
		if !strings.Contains(string(list), want) {
			t.Errorf("package lacks %s:\n%s", want, list)
		}
	}
	if info, _ := exec.Command("dpkg-deb", "-f", debs[0], "Depends").Output(); strings.TrimSpace(string(info)) != "fuse3" {
		t.Errorf("Depends: %q, want fuse3", info)
	}
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v %s", err, out)
	}
	store := importSample(t)
	mnt := t.TempDir()
	script := `set -e
root=$1 store=$2 mnt=$3
trap 'umount -l "$mnt" 2>/dev/null || true' EXIT
mount -t overlay overlay -o lowerdir="$root/usr/bin:/usr/bin" /usr/bin
mount -t overlay overlay -o lowerdir="$root/usr/sbin:/usr/sbin" /usr/sbin
blockfs version | head -1
mount -t fuse.blockfs "$store" "$mnt" -o ro,pool_size=64MiB,allow_other
cat "$mnt/sample/README.txt" >/dev/null
grep " $mnt " /proc/self/mountinfo | grep -o 'fuse.blockfs blockfs:[^ ]* ro'
umount "$mnt"
mount -t blockfs "$store" "$mnt" -o ro,nofail
cat "$mnt/sample/models/config.json" >/dev/null
umount "$mnt"
echo "both helpers ok"
`
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", root, store, mnt).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "blockfs "+version) || !strings.Contains(string(out), "fuse.blockfs blockfs:"+store+" ro") || !strings.Contains(string(out), "both helpers ok") {
		t.Fatalf("mount from the installed files: %v\n%s", err, out)
	}
	if mountedAt(mnt) {
		t.Error("still mounted outside the namespace")
	}
}
