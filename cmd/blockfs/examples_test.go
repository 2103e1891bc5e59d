package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/internal/testsvc"
)

// exampleLines returns the lines of a shipped example that are not
// comments or blank.
func exampleLines(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("../../packaging/examples", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestShippedExamplesMount mounts with the options of each shipped
// example as written, through the real mount(8) and mount.fuse3: the fstab
// line (mount -T), the .mount unit's What/Type/Options (what systemd
// passes to mount), and the autofs map entry (autofs runs mount -t TYPE -o
// OPTIONS LOCATION). Only the store and mountpoint paths are swapped for
// the test's, and log files moved into its temp dir.
func TestShippedExamplesMount(t *testing.T) {
	testsvc.RequireFUSE(t)
	requireTools(t, "mount.fuse3", "unshare")
	store := importSample(t)
	mnt := t.TempDir()
	logDir := t.TempDir()
	swap := strings.NewReplacer("/srv/blockfs/reference", store, "/srv/blockfs/&", store,
		"/data/reference", mnt, "/var/log/", logDir+"/")

	fstab := filepath.Join(t.TempDir(), "fstab")
	if err := os.WriteFile(fstab, []byte(swap.Replace(exampleLines(t, "fstab")[0])+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unit := map[string]string{}
	for _, l := range exampleLines(t, "systemd/data-reference.mount") {
		if k, v, ok := strings.Cut(l, "="); ok {
			unit[k] = v
		}
	}
	if unit["Where"] != "/data/reference" || unit["Type"] != "fuse.blockfs" {
		t.Fatalf(".mount unit: %v", unit)
	}
	auto := strings.Fields(exampleLines(t, "autofs/auto.blockfs")[0]) // KEY -fstype=TYPE,OPTIONS :LOCATION
	autoType, autoOpts, _ := strings.Cut(strings.TrimPrefix(auto[1], "-fstype="), ",")

	bin := t.TempDir()
	if err := os.Symlink(blockfsBin, filepath.Join(bin, "blockfs")); err != nil {
		t.Fatal(err)
	}
	script := `set -e
mnt=$2
trap 'umount -l "$mnt" 2>/dev/null || true' EXIT
mount --bind "$1" /usr/local/sbin
mount -T "$3" "$mnt"; cat "$mnt/sample/README.txt" >/dev/null; umount "$mnt"; echo "fstab ok"
mount -t "$4" "$5" "$mnt" -o "$6"; cat "$mnt/sample/README.txt" >/dev/null; umount "$mnt"; echo "unit ok"
mount -t "$7" -o "$8" "$9" "$mnt"; cat "$mnt/sample/README.txt" >/dev/null; umount "$mnt"; echo "autofs ok"
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
		bin, mnt, fstab,
		unit["Type"], swap.Replace(unit["What"]), swap.Replace(unit["Options"]),
		autoType, autoOpts, swap.Replace(strings.TrimPrefix(auto[2], ":")))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fstab ok\nunit ok\nautofs ok") {
		t.Fatalf("%v:\n%s", err, out)
	}
}
