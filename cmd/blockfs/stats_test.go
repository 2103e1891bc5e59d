package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"blockfs/internal/testsvc"
)

// watchLines runs `blockfs stats ARGS` on a terminal (script(1) gives it a
// pty) and returns its first n lines, failing if they take longer than
// within: with --watch 1h, anything past the first line would.
func watchLines(t *testing.T, n int, within time.Duration, args ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatal("script(1) (util-linux/bsdutils) is needed for the terminal test")
	}
	cmd := exec.Command("script", "-qfc", strings.Join(append([]string{blockfsBin, "stats"}, args...), " "), "/dev/null")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	var got []string
	deadline := time.After(within)
	for len(got) < n {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stats ended after %q", got)
			}
			got = append(got, l)
		case <-deadline:
			t.Fatalf("only %d lines within %v: %q", len(got), within, got)
		}
	}
	return got
}

var rowRE = regexp.MustCompile(`^\d\d:\d\d:\d\d `)

// TestStatsWatchTerminal: on a terminal, --watch prints the layer header,
// the column names and a first row at once (the interval is an hour), in
// 120 columns; the header comes back every 20 rows; --json --watch prints
// an object at once with rates and the cumulative counters.
func TestStatsWatchTerminal(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	mnt := t.TempDir()
	startMount(t, store, mnt)
	if _, err := exec.Command("cat", filepath.Join(mnt, "sample/reference/genome.fa")).Output(); err != nil {
		t.Fatal(err)
	}

	got := watchLines(t, 3, 20*time.Second, "--watch", "1h", mnt)
	for _, layer := range []string{"fuse", "pool", "store", "cache", "meta", "proc"} {
		if !strings.Contains(got[0], " "+layer+" ") {
			t.Errorf("layer header lacks %s: %q", layer, got[0])
		}
	}
	names, row := strings.Fields(got[1]), strings.Fields(got[2])
	if names[0] != "time" || !strings.Contains(got[1], "hit%") || !strings.Contains(got[1], "wst/s") || !strings.Contains(got[1], "p99") {
		t.Errorf("column names: %q", got[1])
	}
	if !rowRE.MatchString(got[2]) || len(row) != len(names) {
		t.Errorf("first row %q does not match the columns %q", got[2], got[1])
	}
	if row[len(row)-3] != "ok" {
		t.Errorf("healthy mount not shown ok: %q", got[2])
	}
	for _, l := range got {
		if n := utf8.RuneCountInString(l); n > 120 {
			t.Errorf("%d columns wide: %q", n, l)
		}
	}

	got = watchLines(t, 2+20+2+1, 60*time.Second, "--watch", "5ms", mnt)
	for i, l := range got {
		header := i%22 < 2
		if header == rowRE.MatchString(l) {
			t.Errorf("line %d %q: header %v expected", i, l, header)
		}
	}

	got = watchLines(t, 1, 20*time.Second, "--json", "--watch", "1h", mnt)
	var rec struct {
		Rates map[string]any `json:"rates"`
		Stats struct {
			Healthy bool             `json:"healthy"`
			Pool    map[string]int64 `json:"-"`
			Fuse    struct {
				ReadBytes int64 `json:"read_bytes"`
			} `json:"fuse"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(got[0]), &rec); err != nil {
		t.Fatalf("%v: %s", err, got[0])
	}
	if rec.Rates["fuse_read_bytes"].(float64) <= 0 || rec.Stats.Fuse.ReadBytes == 0 || !rec.Stats.Healthy {
		t.Errorf("--json --watch record: %s", got[0])
	}
}

// TestStatsVanishedStore: a mount whose store loses its manifest says so
// in every form of `blockfs stats`: healthy false with the reason in
// --json, UNHEALTHY in the summary, ERR in --watch; the generation stays.
func TestStatsVanishedStore(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	if code, _, stderr := blockfs("import", "--store", store, "../../testdata/sample"); code != 0 {
		t.Fatal(stderr)
	}
	mnt := t.TempDir()
	startMount(t, store, mnt, "--refresh", "50ms")
	refs := filepath.Join(store, "blocks", "refs")
	if err := os.Rename(refs, refs+".gone"); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Healthy bool   `json:"healthy"`
		Reason  string `json:"reason"`
		Meta    struct {
			Generation uint64 `json:"generation"`
		} `json:"meta"`
	}
	testsvc.WaitFor(t, "stats to report the store unhealthy", func() bool {
		out, err := exec.Command(blockfsBin, "stats", "--json", mnt).Output()
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatal(err)
		}
		return !st.Healthy
	})
	if !strings.Contains(st.Reason, "no longer holds the manifest") || st.Meta.Generation == 0 {
		t.Errorf("unhealthy stats: reason %q, generation %d", st.Reason, st.Meta.Generation)
	}
	human, err := exec.Command(blockfsBin, "stats", mnt).Output()
	if err != nil || !strings.Contains(string(human), "UNHEALTHY: refreshing metadata") {
		t.Errorf("stats summary: %v\n%s", err, human)
	}
	got := watchLines(t, 3, 20*time.Second, "--watch", "1h", mnt)
	if row := strings.Fields(got[2]); row[len(row)-3] != "ERR" {
		t.Errorf("--watch row of an unhealthy mount: %q", got[2])
	}
}
