package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/blockstore"
	"blockfs/internal/testsvc"
)

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, stderr := blockfs(args...)
	if code != 0 {
		t.Fatalf("blockfs %q: exit %d, %s", args, code, stderr)
	}
	return out
}

func readHead(t *testing.T, store string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(store, "blocks", "refs", "meta", "head"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lastSegmentBlock is the block file of the newest segment of the current
// manifest, read the way an operator would: the ref names the manifest's
// blocks, the manifest is JSON.
func lastSegmentBlock(t *testing.T, store string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(readHead(t, store)), "\n")
	var manifest []byte
	for _, l := range lines[1:] {
		loc, err := blockstore.ParseLocator(l)
		if err != nil {
			t.Fatal(err)
		}
		h := loc.Hash.String()
		b, err := os.ReadFile(filepath.Join(store, "blocks", h[:2], h))
		if err != nil {
			t.Fatal(err)
		}
		manifest = append(manifest, b...)
	}
	var m struct {
		Segments []struct {
			Blocks []blockstore.Locator `json:"blocks"`
		} `json:"segments"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	h := m.Segments[len(m.Segments)-1].Blocks[0].Hash.String()
	return filepath.Join(store, "blocks", h[:2], h)
}

// TestSnapshotCommands: log, tag, rollback (a dry run changes nothing; a
// real mount then serves the tagged files byte for byte, its private log
// under --meta-dir), repair after a lost metadata block, and verify failing
// clearly on a store that lost meta/head.
func TestSnapshotCommands(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	src, v1 := t.TempDir(), t.TempDir()
	for _, d := range []string{src, v1} {
		writeFile(t, filepath.Join(d, "a"), strings.Repeat("first a\n", 5000))
		writeFile(t, filepath.Join(d, "sub/b"), "first b\n")
	}
	mustRun(t, "import", "--store", store, src, "/d")
	if out := mustRun(t, "tag", "--store", store, "v1"); !strings.Contains(out, "tagged snapshot 1 as v1") {
		t.Fatalf("tag: %q", out)
	}
	if code, _, stderr := blockfs("tag", "--store", store, "a/b"); code != 2 || !strings.Contains(stderr, "bad tag name") {
		t.Fatalf("tag a/b: exit %d %q", code, stderr)
	}
	writeFile(t, filepath.Join(src, "a"), "second a\n")
	os.RemoveAll(filepath.Join(src, "sub"))
	mustRun(t, "import", "--delete", "--store", store, src, "/d")

	out := mustRun(t, "log", "--store", store)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "2 ") || !strings.Contains(lines[2], "v1") {
		t.Fatalf("log:\n%s", out)
	}
	var js struct {
		Snapshots []struct {
			Generation uint64 `json:"generation"`
		} `json:"snapshots"`
		Tags []struct {
			Name string `json:"name"`
		} `json:"tags"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "log", "--json", "--store", store)), &js); err != nil || len(js.Snapshots) != 2 || len(js.Tags) != 1 {
		t.Fatalf("log --json: %+v %v", js, err)
	}

	before := readHead(t, store)
	if out := mustRun(t, "rollback", "--dry-run", "--store", store, "v1"); !strings.Contains(out, "would roll back from snapshot 2 to snapshot 1") {
		t.Fatalf("rollback --dry-run: %q", out)
	}
	if readHead(t, store) != before {
		t.Fatal("rollback --dry-run changed meta/head")
	}
	if out := mustRun(t, "rollback", "--store", store, "v1"); !strings.Contains(out, "published as snapshot 3") {
		t.Fatalf("rollback: %q", out)
	}
	metaDir, mnt := t.TempDir(), t.TempDir()
	cmd := startMount(t, store, mnt, "--meta-dir", metaDir)
	for _, f := range []string{"a", "sub/b"} {
		if out, err := exec.Command("cmp", filepath.Join(v1, f), filepath.Join(mnt, "d", f)).CombinedOutput(); err != nil {
			t.Errorf("after rollback, %s: %v %s", f, err, out)
		}
	}
	if dirs, _ := filepath.Glob(filepath.Join(metaDir, "blockfs-meta-*")); len(dirs) != 1 {
		t.Errorf("--meta-dir holds %v, want the mount's log", dirs)
	}
	exec.Command("umount", mnt).Run()
	cmd.Wait()

	// Lose a metadata block: verify fails, repair fixes it.
	writeFile(t, filepath.Join(src, "c"), "third\n")
	mustRun(t, "import", "--store", store, src, "/d")
	if err := os.Remove(lastSegmentBlock(t, store)); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := blockfs("verify", "--store", store); code != 1 || !strings.Contains(stderr, "not found") {
		t.Fatalf("verify with a lost metadata block: exit %d %q", code, stderr)
	}
	before = readHead(t, store)
	if out := mustRun(t, "repair", "--dry-run", "--store", store); !strings.Contains(out, "damaged: segment") || !strings.Contains(out, "would roll back from snapshot 4 to snapshot 3") {
		t.Fatalf("repair --dry-run: %q", out)
	}
	if readHead(t, store) != before {
		t.Fatal("repair --dry-run changed meta/head")
	}
	if out := mustRun(t, "repair", "--store", store); !strings.Contains(out, "repaired: rolled back from snapshot 4 to snapshot 3") {
		t.Fatalf("repair: %q", out)
	}
	if out := mustRun(t, "verify", "--store", store); !strings.Contains(out, "verified /: 2 files") {
		t.Fatalf("verify after repair: %q", out)
	}

	if err := os.Remove(filepath.Join(store, "blocks", "refs", "meta", "head")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := blockfs("verify", "--store", store)
	if code != 1 || !strings.Contains(stderr, "no metadata published") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("verify without meta/head: exit %d %q", code, stderr)
	}
}

// TestS3TypoIsNoStore: an S3 prefix nothing was imported into used to mount
// as an empty tree with exit 0. Now mount and verify fail with one line
// saying there is no blockfs store there; import creates the marker, and
// the store then verifies.
func TestS3TypoIsNoStore(t *testing.T) {
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/typo"
	env := s3Env(m, m.Endpoint())
	runBin := func(args ...string) (int, string) {
		cmd := exec.Command(blockfsBin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	want := spec + ": no blockfs store here (no blockfs-store marker); create one with blockfs import"
	for _, args := range [][]string{{"verify", "--store", spec}, {"mount", "--store", spec, t.TempDir()}, {"log", "--store", spec}} {
		code, out := runBin(args...)
		if code != 1 || !strings.Contains(out, want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("blockfs %s of a typo'd prefix: exit %d, %q; want exit 1 and one line %q", args[0], code, out, want)
		}
	}
	if code, out := runBin("import", "-q", "--store", spec, "../../testdata/sample/README.txt"); code != 0 {
		t.Fatalf("import: %d %s", code, out)
	}
	if code, out := runBin("verify", "--store", spec); code != 0 || !strings.Contains(out, "1 files") {
		t.Fatalf("verify after import: %d %s", code, out)
	}
}

// TestMountAtCommand: `blockfs mount --at TAG` serves the tagged version
// while the store has moved on; --at an unknown tag fails in one line.
func TestMountAtCommand(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "tagged\n")
	mustRun(t, "import", "--store", store, src, "/d")
	mustRun(t, "tag", "--store", store, "ok")
	writeFile(t, filepath.Join(src, "f"), "newer\n")
	mustRun(t, "import", "--store", store, src, "/d")
	mnt := t.TempDir()
	cmd := startMount(t, store, mnt, "--at", "ok")
	if b, err := os.ReadFile(filepath.Join(mnt, "d", "f")); err != nil || string(b) != "tagged\n" {
		t.Errorf("mount --at ok: %q %v", b, err)
	}
	exec.Command("umount", mnt).Run()
	cmd.Wait()
	out, err := exec.Command(blockfsBin, "mount", "--store", store, "--at", "nope", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `tag "nope": no such snapshot`) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("mount --at nope: %v %q", err, out)
	}
}

// TestImportDeleteDryRun: import --delete --dry-run lists exactly what the
// import would add, change and delete, and leaves meta/head as it was; the
// real run then does just that.
func TestImportDeleteDryRun(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep"), "k\n")
	writeFile(t, filepath.Join(src, "change"), "c1\n")
	writeFile(t, filepath.Join(src, "sub", "gone"), "g\n")
	mustRun(t, "import", "--store", store, src, "/d")
	writeFile(t, filepath.Join(src, "change"), "c2 longer\n")
	writeFile(t, filepath.Join(src, "new"), "n\n")
	if err := os.RemoveAll(filepath.Join(src, "sub")); err != nil {
		t.Fatal(err)
	}
	before := readHead(t, store)
	out := mustRun(t, "import", "--delete", "--dry-run", "--store", store, src, "/d")
	want := "would add /d/new\nwould change /d/change\nwould delete /d/sub/gone\nwould delete /d/sub\n" +
		"dry run: would add 1, change 1, delete 2 paths; nothing changed\n"
	if out != want {
		t.Fatalf("dry run printed:\n%s\nwant\n%s", out, want)
	}
	if readHead(t, store) != before {
		t.Fatal("import --dry-run changed meta/head")
	}
	if got := mustRun(t, "ls", "--store", store, "/d"); got != "change\nkeep\nsub\n" {
		t.Fatalf("after the dry run /d lists %q", got)
	}
	out = mustRun(t, "import", "--delete", "--store", store, src, "/d")
	if !strings.Contains(out, "2 deleted") {
		t.Fatalf("import --delete summary: %s", out)
	}
	if got := mustRun(t, "ls", "--store", store, "/d"); got != "change\nkeep\nnew\n" {
		t.Fatalf("after the import /d lists %q", got)
	}
}
