package mount

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
)

// dying reports whether thread tid has a fatal signal pending (the kernel
// marks every thread of a process being killed with SIGKILL, whatever the
// signal was), or is gone. Tid 0 is a reader the kernel could not name in
// the mount's pid namespace: not known to be dying.
func dying(tid uint32) bool {
	if tid == 0 {
		return false
	}
	status, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(tid), 10) + "/status")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	return fatalPending(status)
}

// fatalPending reports whether a /proc/PID/status text shows SIGKILL in
// the thread's pending signals (SigPnd, a hex mask of bit signal-1).
func fatalPending(status []byte) bool {
	for line := range bytes.Lines(status) {
		hex, ok := bytes.CutPrefix(line, []byte("SigPnd:"))
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(string(bytes.TrimSpace(hex)), 16, 64)
		return err == nil && mask&(1<<(syscall.SIGKILL-1)) != 0
	}
	return false
}
