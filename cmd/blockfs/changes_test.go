package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blockfs/fs/volume"

	"github.com/dustin/go-humanize"
)

// logSnapshots is blockfs log --json's snapshots, newest first.
func logSnapshots(t *testing.T, store string) []volume.Snapshot {
	t.Helper()
	var js struct {
		Snapshots []volume.Snapshot `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "log", "--json", "--store", store)), &js); err != nil {
		t.Fatal(err)
	}
	return js.Snapshots
}

func wantChanges(t *testing.T, what string, s volume.Snapshot, want volume.Changes) {
	t.Helper()
	if s.Changes == nil {
		t.Fatalf("%s (snapshot %d, %s): no counts recorded", what, s.Generation, s.Op)
	}
	if *s.Changes != want {
		t.Errorf("%s (snapshot %d, %s): counts\n %+v\nwant\n %+v", what, s.Generation, s.Op, *s.Changes, want)
	}
}

// TestSnapshotChangeCounts: an import of N files (and two directories and a
// symlink), an rm of k of them, a rollback to before the rm, a re-import
// changing one file and a compaction each record exactly what they changed,
// shown by log --json and humanized by log.
func TestSnapshotChangeCounts(t *testing.T) {
	const n, k = 40, 5
	store := filepath.Join(t.TempDir(), "store")
	src := t.TempDir()
	var total, gone int64
	for i := range n {
		size := 100 + i*10
		dir := src
		if i%2 == 1 {
			dir = filepath.Join(src, "sub")
		}
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), strings.Repeat("x", size))
		total += int64(size)
	}
	if err := os.Symlink("f00", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "import", "--store", store, src, "/d")
	snaps := logSnapshots(t, store)
	wantChanges(t, "import", snaps[0], volume.Changes{FilesAdded: n, DirsAdded: 2, LinksAdded: 1, BytesAdded: total})

	var rm []string
	for i := 0; i < 2*k; i += 2 { // k files of the top directory
		rm = append(rm, fmt.Sprintf("/d/f%02d", i))
		gone += int64(100 + i*10)
	}
	mustRun(t, append([]string{"rm", "--store", store}, rm...)...)
	snaps = logSnapshots(t, store)
	wantChanges(t, "rm", snaps[0], volume.Changes{FilesRemoved: k, BytesRemoved: gone})

	out := mustRun(t, "rollback", "--store", store, "1")
	if want := fmt.Sprintf("changes: +%d files", k); !strings.Contains(out, want) {
		t.Errorf("rollback printed %q, want %q", out, want)
	}
	snaps = logSnapshots(t, store)
	wantChanges(t, "rollback", snaps[0], volume.Changes{FilesAdded: k, BytesAdded: gone})

	// A changed file: its old size removed, its new size added.
	writeFile(t, filepath.Join(src, "sub", "f01"), strings.Repeat("y", 7))
	mustRun(t, "import", "--store", store, src, "/d")
	snaps = logSnapshots(t, store)
	wantChanges(t, "re-import", snaps[0], volume.Changes{FilesChanged: 1, BytesAdded: 7, BytesRemoved: 110})

	mustRun(t, "compact", "--store", store)
	snaps = logSnapshots(t, store)
	if snaps[0].Op != volume.OpCompact {
		t.Fatalf("newest snapshot is %s, want a compaction", snaps[0].Op)
	}
	wantChanges(t, "compact", snaps[0], volume.Changes{})

	lines := strings.Split(strings.TrimSpace(mustRun(t, "log", "--store", store)), "\n")
	for i, want := range []string{
		"none",                         // compact
		"~1 file (+7 B -110 B in all)", // re-import
		fmt.Sprintf("+%d files (+%s)", k, humanBytes(gone)), // rollback
		fmt.Sprintf("-%d files (-%s)", k, humanBytes(gone)), // rm
		fmt.Sprintf("+%d files (+%s) +2 dirs +1 symlink", n, humanBytes(total)),
	} {
		if !strings.Contains(lines[i+1], want) {
			t.Errorf("log line %d %q lacks %q", i+1, lines[i+1], want)
		}
	}
}

func humanBytes(n int64) string { return humanize.IBytes(uint64(n)) }

// TestFormatChangesUnknown: a snapshot without counts (an older blockfs
// wrote it) shows "-", not zero; one that changed nothing shows "none".
func TestFormatChangesUnknown(t *testing.T) {
	if got := formatChanges(nil); got != "-" {
		t.Errorf("formatChanges(nil) = %q, want -", got)
	}
	if got := formatChanges(&volume.Changes{}); got != "none" {
		t.Errorf("formatChanges(zero) = %q, want none", got)
	}
	if got := formatChanges(&volume.Changes{FilesAdded: 120, BytesAdded: 3565158, FilesRemoved: 2}); got != "+120 files (+3.4 MiB) -2 files" {
		t.Errorf("formatChanges = %q", got)
	}
}
