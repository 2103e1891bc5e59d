package testsvc

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// server is a service's process: its output kept for error messages, its
// exit observed, and killed should the test binary die first.
type server struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	log    *tailBuffer
}

// errExited is a server that exited before it became ready.
var errExited = errors.New("exited")

// startServer starts cmd, its output kept in a tail buffer.
func startServer(cmd *exec.Cmd) (*server, error) {
	s := &server{cmd: cmd, exited: make(chan struct{}), log: &tailBuffer{max: 8 << 10}}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// Do not outlive the test binary, even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// waitReady calls ready every 20 ms until it returns nil, the process
// exits, or startTimeout passes. what names the server in errors.
func (s *server) waitReady(what string, ready func() error) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s %w before becoming ready (%s); output:\n%s", what, errExited, s.cmd.ProcessState, s.log.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v (last error: %v); output:\n%s", what, startTimeout, err, s.log.String())
		}
	}
}

// stop asks the process to end (SIGTERM), kills it after grace, and waits.
func (s *server) stop(grace time.Duration) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(grace):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// pid is the process id.
func (s *server) pid() int { return s.cmd.Process.Pid }
