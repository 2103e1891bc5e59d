package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestVersion(t *testing.T) {
	v := versionOf(t, blockfsBin)
	if v.Version != version || v.Go != runtime.Version() {
		t.Errorf("version --json: %+v", v)
	}
	head, gitErr := exec.Command("git", "rev-parse", "HEAD").Output()
	// TestMain's plain go build: the go command stamps the commit in a
	// clone (a .git directory), unless GOFLAGS turns stamping off; in a
	// linked worktree it cannot (golang/go#58218).
	gitDir, _ := exec.Command("git", "rev-parse", "--absolute-git-dir").Output()
	common, _ := exec.Command("git", "rev-parse", "--path-format=absolute", "--git-common-dir").Output()
	goflags, _ := exec.Command("go", "env", "GOFLAGS").Output()
	if gitErr == nil && string(gitDir) == string(common) && !strings.Contains(string(goflags), "buildvcs=false") {
		if v.Commit != strings.TrimSpace(string(head)) || v.CommitTime == "" {
			t.Errorf("go build in a clone: commit %q at %q, want HEAD %s", v.Commit, v.CommitTime, head)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(blockfsBin, args...).Output()
		if err != nil || !strings.HasPrefix(string(out), "blockfs "+version+"\ncommit:") || !strings.Contains(string(out), "go:        "+runtime.Version()) {
			t.Errorf("%q: %v %q", args, err, out)
		}
	}
	if gitErr != nil {
		return
	}
	// make build names the commit from git in a clone and a worktree alike.
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("make is required under CI=true: %v", err)
		}
		t.Skip("no make")
	}
	bin := t.TempDir()
	if out, err := exec.Command("make", "-s", "-C", "../..", "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v %s", err, out)
	}
	mv := versionOf(t, filepath.Join(bin, "blockfs"))
	if mv.Commit != strings.TrimSpace(string(head)) || mv.CommitTime == "" || mv.BuildDate == "" {
		t.Errorf("make build: %+v, want commit %s and dates", mv, head)
	}
}

func versionOf(t *testing.T, bin string) versionInfo {
	t.Helper()
	out, err := exec.Command(bin, "--version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v versionInfo
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return v
}

func TestCLIConventions(t *testing.T) {
	t.Setenv("BLOCKFS_STORE", "")
	for _, c := range []struct {
		args []string
		code int
		out  string // in stdout (code 0) or stderr
	}{
		{[]string{"help", "help"}, 0, "Usage: blockfs COMMAND"},
		{[]string{"help", "version"}, 0, "Usage: blockfs version"},
		{[]string{"mout", "/mnt"}, 2, `unknown command "mout", did you mean "mount"?`},
		{[]string{"help", "imprt"}, 2, `did you mean "import"?`},
		{[]string{"stat"}, 2, `did you mean "stats"?`},
		{[]string{"mount", "--store", "s3://", "/mnt"}, 2, "malformed store string: no bucket"},
		{[]string{"import", "--store", "ftp://x/y", "src"}, 2, `unsupported scheme "ftp"`},
		// flags before the command are the command's
		{[]string{"--store", "s3://", "mount", "/mnt"}, 2, "blockfs mount: store s3://"},
		{[]string{"mount", "--store", "s", "--log-level", "loud", "/mnt"}, 2, "unknown log level"},
	} {
		code, out, stderr := blockfs(c.args...)
		got := stderr
		if c.code == 0 {
			got = out
		}
		if code != c.code || !strings.Contains(got, c.out) {
			t.Errorf("blockfs %q: exit %d, out %q, err %q; want %d and %q", c.args, code, out, stderr, c.code, c.out)
		}
	}
}

func TestQuietImportPrintsNothing(t *testing.T) {
	store := t.TempDir() + "/store"
	code, out, stderr := blockfs("import", "-q", "--store", store, "../../testdata/sample")
	if code != 0 || out != "" || stderr != "" {
		t.Errorf("import -q: exit %d, %q %q", code, out, stderr)
	}
}

func TestSizesReadBareUnitsAsBinary(t *testing.T) {
	for in, want := range map[string]uint64{"1G": 1 << 30, "1g": 1 << 30, "512M": 512 << 20, "1.5G": 3 << 29, "1GiB": 1 << 30, "1GB": 1e9, "4096": 4096, "64 M": 64 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q = %d %v, want %d", in, got, err, want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	// Half of 100MiB in 10s: 5MiB/s, 10s left.
	p := &progressBar{unit: bytesUnit}
	line := p.line(50<<20, 100<<20, 10*time.Second)
	if !strings.Contains(line, "50 MiB/100 MiB 5.0 MiB/s ETA 10s") {
		t.Errorf("bytes: %q", line)
	}
	c := &progressBar{unit: countUnit("blocks")}
	if line := c.line(1500, 3000, 3*time.Second); !strings.Contains(line, "1,500 blocks/3,000 blocks 500 blocks/s ETA 3s") {
		t.Errorf("blocks: %q", line)
	}
}

// TestLogFlagsUnderJournal: with stderr on the journal (JOURNAL_STREAM
// set) text lines carry no timestamp of ours; a log file keeps them.
func TestLogFlagsUnderJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "8:12345")
	fl := pflag.NewFlagSet("t", pflag.ContinueOnError)
	lf := addLogFlags(fl)
	file := filepath.Join(t.TempDir(), "log")
	for _, toFile := range []bool{false, true} {
		if toFile {
			fl.Set("log-file", file)
		}
		var b strings.Builder
		logger, closeLog, err := lf.open(&b, false)
		if err != nil {
			t.Fatal(err)
		}
		logger.Info("hello")
		logger.Debug("hidden")
		closeLog()
		got := b.String()
		if toFile {
			data, _ := os.ReadFile(file)
			got = string(data)
		}
		if strings.Contains(got, "hidden") || !strings.Contains(got, "level=INFO msg=hello") || strings.Contains(got, "time=") != toFile {
			t.Errorf("to file %v: %q", toFile, got)
		}
	}
}
