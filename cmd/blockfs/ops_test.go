package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/mount"
	"blockfs/internal/testsvc"
)

// importSample imports testdata/sample into a new store and returns it.
func importSample(t *testing.T, flags ...string) string {
	t.Helper()
	store := filepath.Join(t.TempDir(), "store")
	args := append(append([]string{"import", "-q"}, flags...), "--store", store, "../../testdata/sample")
	if code, _, stderr := blockfs(args...); code != 0 {
		t.Fatal(stderr)
	}
	return store
}

// listenNotify is a NOTIFY_SOCKET as systemd makes one: a unix datagram
// socket, at a path or (name starting with '@') in the abstract namespace.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	addr := name
	if strings.HasPrefix(name, "@") {
		addr = "\x00" + name[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	// A deadline, not a sleep: a mount that never says READY fails the test.
	c.SetReadDeadline(time.Now().Add(time.Minute))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	return string(buf[:n])
}

func TestSdNotify(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := importSample(t)
	for _, sock := range []string{filepath.Join(t.TempDir(), "notify"), "@blockfs-test-notify-" + filepath.Base(t.TempDir())} {
		c := listenNotify(t, sock)
		mnt := t.TempDir()
		cmd := exec.Command(blockfsBin, "mount", "--store", store, "--refresh", "50ms", mnt)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		msg := readNotify(t, c)
		if !regexp.MustCompile(`^READY=1\nSTATUS=serving .*store generation \d+$`).MatchString(msg) {
			t.Fatalf("%s: first message %q", sock, msg)
		}
		// READY=1 means serving: a read right now succeeds.
		if _, err := os.ReadFile(filepath.Join(mnt, "sample/README.txt")); err != nil {
			t.Fatalf("read right after READY=1: %v", err)
		}
		// An import publishes a new generation; the status follows it.
		gen := msg[strings.LastIndex(msg, " ")+1:]
		if code, _, stderr := blockfs("import", "-q", "--store", store, "../../testdata/sample/docs", "/more-"+filepath.Base(mnt)); code != 0 {
			t.Fatal(stderr)
		}
		if msg := readNotify(t, c); !strings.HasPrefix(msg, "STATUS=serving ") || strings.HasSuffix(msg, " generation "+gen) {
			t.Errorf("%s: after an import %q (was generation %s)", sock, msg, gen)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		msg = readNotify(t, c)
		for strings.HasPrefix(msg, "STATUS=serving ") { // an import may publish more than once
			msg = readNotify(t, c)
		}
		if msg != "STOPPING=1" {
			t.Errorf("%s: on SIGTERM %q", sock, msg)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("mount exit: %v", err)
		}
	}
}

func TestDaemonReadiness(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := importSample(t)
	mnt := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "log")
	// Output (not Start) returns only when stdout closes: the daemon must
	// not keep the caller's pipes.
	out, err := exec.Command(blockfsBin, "mount", "--daemon", "--log-file", logFile, "--log-format", "json", "--store", store, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	want, _ := os.ReadFile("../../testdata/sample/reference/genome.fa")
	if got, err := os.ReadFile(filepath.Join(mnt, "sample/reference/genome.fa")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read right after --daemon returned: %v", err)
	}
	if err := syscall.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, "the daemon to log its end", func() bool {
		b, _ := os.ReadFile(logFile)
		return bytes.Contains(b, []byte(`"msg":"unmounted"`))
	})
	b, _ := os.ReadFile(logFile)
	if !bytes.Contains(b, []byte(`"msg":"serving"`)) || !bytes.Contains(b, []byte("blockfs mount: serving")) {
		t.Errorf("log file:\n%s", b)
	}

	// A store that is not there: exit 1 with the store's error, from the child.
	out, err = exec.Command(blockfsBin, "mount", "--daemon", "--store", filepath.Join(t.TempDir(), "none"), mnt).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "no blockfs store") {
		t.Errorf("bad store: %v %q", err, out)
	}
}

// TestRepeatedReadFailuresLogBounded: 1000 failed reads of one corrupt
// block through a real mount are a few log lines, one carrying the count.
// Unpacked, so that the corrupt block is config.json's own.
func TestRepeatedReadFailuresLogBounded(t *testing.T) {
	testsvc.RequireFUSE(t)
	store := importSample(t, "--pack-below", "0")
	data, _ := os.ReadFile("../../testdata/sample/models/config.json")
	h := blockstore.Sum(data).String()
	bad := bytes.ToUpper(data) // same size, other bytes: the hash does not verify
	if bytes.Equal(bad, data) {
		bad[0] ^= 1
	}
	blockFile := filepath.Join(store, "blocks", h[:2], h)
	os.Chmod(blockFile, 0o644)
	if err := os.WriteFile(blockFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	cmd := exec.Command(blockfsBin, "mount", "--store", store, "--log-format", "json", mnt)
	var stderr bytes.Buffer
	pr, pw, _ := os.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	lines := make(chan string, 100000)
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := pr.Read(buf)
			stderr.Write(buf[:n])
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	testsvc.WaitFor(t, "the mount to serve", func() bool { return mountedAt(mnt) })
	path := filepath.Join(mnt, "sample/models/config.json")
	for i := range 1000 {
		if _, err := os.ReadFile(path); err == nil {
			t.Fatalf("read %d of a corrupt block succeeded", i)
		}
	}
	var st mount.Stats
	b, err := os.ReadFile(filepath.Join(mnt, mount.StatsFileName))
	if err != nil || json.Unmarshal(b, &st) != nil {
		t.Fatalf("stats: %v %s", err, b)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	for range lines {
	}
	// Each failure is a first line, or held back and counted in a later
	// summary line's "repeated".
	var nLines, firsts, repeated int
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec struct {
			Msg      string `json:"msg"`
			Block    string `json:"block"`
			Repeated int    `json:"repeated"`
		}
		if json.Unmarshal([]byte(l), &rec) != nil || rec.Msg != "read failed" {
			continue
		}
		nLines++
		if rec.Repeated == 0 {
			firsts++
		}
		repeated += rec.Repeated
		if !strings.Contains(rec.Block, h) {
			t.Errorf("failure names block %q, want %s", rec.Block, h)
		}
	}
	errs := st.Fuse.Errors
	if nLines < 1 || nLines > 3 || int64(firsts+repeated) != errs || errs < 1000 {
		t.Fatalf("%d lines for %d failed reads (%d more in counts):\n%s", nLines, errs, repeated, stderr.String())
	}
	t.Logf("%d failed block reads logged in %d lines", errs, nLines)
}

func mountedAt(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(b), " "+dir+" ")
}
