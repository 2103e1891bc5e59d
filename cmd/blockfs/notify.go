package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// notifier tells whoever started blockfs how the mount is doing: the
// parent of a --daemon process through a pipe, systemd through
// $NOTIFY_SOCKET, or nobody.
type notifier interface {
	ready(status string)  // the mount serves
	status(status string) // what it serves changed
	stopping()
	fail(err error) // the mount will not serve
}

// readyFDEnv names the descriptor of a daemon child's readiness pipe.
const readyFDEnv = "BLOCKFS_READY_FD"

// newNotifier picks the notifier of this process's situation.
func newNotifier() notifier {
	if fd := os.Getenv(readyFDEnv); fd != "" {
		os.Unsetenv(readyFDEnv)
		if n, err := strconv.Atoi(fd); err == nil {
			return &pipeNotifier{f: os.NewFile(uintptr(n), "ready")}
		}
	}
	if sock := os.Getenv("NOTIFY_SOCKET"); sock != "" {
		return sdNotifier{socket: sock}
	}
	return nopNotifier{}
}

type nopNotifier struct{}

func (nopNotifier) ready(string)  {}
func (nopNotifier) status(string) {}
func (nopNotifier) stopping()     {}
func (nopNotifier) fail(error)    {}

// sdNotifier speaks systemd's notify protocol: newline-separated
// VAR=value lines in one datagram to the unix socket named by
// NOTIFY_SOCKET ('@' at its start means the abstract namespace), so a
// Type=notify unit is "started" exactly when the mount serves.
type sdNotifier struct{ socket string }

func (s sdNotifier) ready(status string)  { _ = sdNotify(s.socket, "READY=1\nSTATUS="+status) }
func (s sdNotifier) status(status string) { _ = sdNotify(s.socket, "STATUS="+status) }
func (s sdNotifier) stopping()            { _ = sdNotify(s.socket, "STOPPING=1") }
func (s sdNotifier) fail(err error)       { _ = sdNotify(s.socket, "STATUS=failed: "+oneLine(err.Error())) }

// sdNotify sends one state message to socket.
func sdNotify(socket, state string) error {
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	if strings.HasPrefix(socket, "@") {
		addr.Name = "\x00" + socket[1:]
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// pipeNotifier is the daemon child's end of the readiness pipe: one line,
// "READY" or "ERR <error>", then the pipe is closed.
type pipeNotifier struct{ f *os.File }

func (p *pipeNotifier) ready(string)  { p.send("READY") }
func (p *pipeNotifier) status(string) {}
func (p *pipeNotifier) stopping()     {}
func (p *pipeNotifier) fail(err error) {
	p.send("ERR " + oneLine(err.Error()))
}

func (p *pipeNotifier) send(line string) {
	if p.f == nil {
		return
	}
	fmt.Fprintln(p.f, line)
	p.f.Close()
	p.f = nil
}

// daemonize re-runs this command as a detached process (Go cannot fork a
// running runtime) and waits until it serves or fails. The child's stdio
// is /dev/null, or logFile for stderr, so nothing holds the caller's
// terminal or pipes open: mount(8) and a shell's $(...) return.
func daemonize(argv []string, logFile string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return fmt.Errorf("daemon: %w", err)
	}
	defer null.Close()
	stderr := null
	if logFile != "" {
		if stderr, err = os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640); err != nil {
			w.Close()
			return fmt.Errorf("log file: %w", err)
		}
		defer stderr.Close()
	}
	cmd := exec.Command(exe, argv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, stderr
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.Env = append(childEnv(), readyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	return awaitReady(r, cmd)
}

// childEnv is our environment without NOTIFY_SOCKET: the daemon child is
// not the process a unit started.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, readyFDEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// awaitReady reads the child's one line. A child that dies without one
// is reaped and its exit reported.
func awaitReady(r *os.File, cmd *exec.Cmd) error {
	var buf [4096]byte
	n, _ := readAll(r, buf[:])
	line := strings.TrimSpace(string(buf[:n]))
	switch {
	case line == "READY":
		_ = cmd.Process.Release()
		return nil
	case strings.HasPrefix(line, "ERR "):
		_ = cmd.Wait()
		return errors.New(strings.TrimPrefix(line, "ERR "))
	}
	werr := cmd.Wait()
	return fmt.Errorf("the mount process ended before serving (%v); see its log", werr)
}

// readAll reads until EOF or buf is full.
func readAll(r *os.File, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
