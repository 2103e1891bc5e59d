package mount_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"blockfs/fs/chunker"
	"blockfs/fs/internal/fstest"
	"blockfs/fs/mount"
	"blockfs/fs/tree"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
	"blockfs/objects"
)

// lockedBuffer is a log destination tests can read while a mount writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writeEntries publishes raw metadata entries to the store at spec, as a
// hostile or broken importer could.
func writeEntries(t *testing.T, spec string, entries ...objects.Entry) {
	t.Helper()
	vol, err := volume.Open(context.Background(), spec, volume.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	if err := vol.Meta.MultiWrite(entries); err != nil {
		t.Fatal(err)
	}
	if err := vol.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestHostileDirectoryEntries: entries no kernel can take (an empty name,
// a name with a slash, one over 255 bytes) and a node that does not decode
// are left out of the listing, counted and logged once each; the rest of
// the directory is served, and only the broken node's own path fails.
func TestHostileDirectoryEntries(t *testing.T) {
	testsvc.RequireFUSE(t)
	src := t.TempDir()
	fstest.WriteFile(t, filepath.Join(src, "good1"), []byte("one\n"), 0o644)
	fstest.WriteFile(t, filepath.Join(src, "good2"), []byte("two\n"), 0o644)
	store := filepath.Join(t.TempDir(), "store")
	fstest.ImportInto(t, store, src, "/d", chunker.Config{})
	file := (&tree.Node{Kind: tree.KindFile, Mode: 0o644}).AppendBinary(nil)
	long := strings.Repeat("n", 300)
	writeEntries(t, store,
		objects.Entry{Keys: [][]byte{[]byte("/d/"), []byte("/d\x00")}, Value: file},
		objects.Entry{Keys: [][]byte{[]byte("/d/a\x01b"), []byte("/d\x00a/b")}, Value: file},
		tree.Entry("/d/"+long, &tree.Node{Kind: tree.KindFile, Mode: 0o644}),
		objects.Entry{Keys: [][]byte{[]byte("/d/broken"), []byte("/d\x00broken")}, Value: []byte{0xff, 0xff, 0xff}},
	)
	var logs lockedBuffer
	tm := fstest.MountStore(t, store, mount.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	for range 3 {
		if got := fstest.Sh(t, "ls", "-a", tm.Path("d")); got != "good1\ngood2\n" {
			t.Fatalf("ls -a of a directory with hostile entries:\n%s", got)
		}
	}
	if got := fstest.Sh(t, "cat", tm.Path("d/good1"), tm.Path("d/good2")); got != "one\ntwo\n" {
		t.Errorf("cat of the good entries: %q", got)
	}
	for range 2 {
		if _, err := os.Stat(tm.Path("d/broken")); !errors.Is(err, syscall.EIO) {
			t.Errorf("stat of an undecodable node: %v, want EIO", err)
		}
	}
	if st := tm.StatsViaFile(t); st.Fuse.BadEntries != 4 {
		t.Errorf("bad entries counted %d, want 4 (each once)", st.Fuse.BadEntries)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 4 {
		t.Errorf("logged %d lines for 4 bad entries, want one each:\n%s", len(lines), logs.String())
	}
	for _, want := range []string{"empty name", "contains /", "300 bytes", "broken"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not mention %q:\n%s", want, logs.String())
		}
	}
}
