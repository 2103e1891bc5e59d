package mount

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrMountpoint is wrapped by every mountpoint problem found before mounting.
var ErrMountpoint = errors.New("bad mountpoint")

// TuneReadahead lets the kernel read ahead by maxRead on the FUSE mount at
// mountpoint rather than its default 128 KiB, so that a sequential reader
// issues 1 MiB requests. It needs root; without it a mount still works, with
// smaller requests.
func TuneReadahead(mountpoint string) {
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		return
	}
	major, minor := (st.Dev>>8)&0xfff, (st.Dev&0xff)|((st.Dev>>12)&0xfff00)
	f := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	_ = os.WriteFile(f, []byte(strconv.Itoa(maxRead>>10)), 0)
}

// CheckMountpoint returns the absolute path of mountpoint, or a clear error
// if it is missing, not a directory, already a mount point, a dead mount
// (with the command that clears it), or, unless allowNonEmpty, not empty:
// a mount would hide its files.
func CheckMountpoint(mountpoint string, allowNonEmpty bool) (string, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w: %w", mountpoint, ErrMountpoint, err)
	}
	// statfs always reaches a FUSE server, where stat may be answered
	// from the kernel's cache of a mount whose server is gone.
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(abs, &sfs); errors.Is(err, syscall.ENOTCONN) {
		return "", DeadMountError(abs)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, syscall.ENOTCONN) {
		return "", DeadMountError(abs)
	}
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w: %w", mountpoint, ErrMountpoint, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("mountpoint %s: %w: not a directory", mountpoint, ErrMountpoint)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	mounted, err := isMountpoint(abs)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", mountpoint, err)
	}
	if mounted {
		return "", fmt.Errorf("mountpoint %s: %w: something is already mounted there", mountpoint, ErrMountpoint)
	}
	if !allowNonEmpty {
		if err := checkEmpty(abs); err != nil {
			return "", fmt.Errorf("mountpoint %s: %w", mountpoint, err)
		}
	}
	return abs, nil
}

// checkEmpty fails if dir has any entry.
func checkEmpty(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMountpoint, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("%w: not empty (the mount would hide %q and the rest; --allow-non-empty mounts anyway)", ErrMountpoint, names[0])
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", ErrMountpoint, err)
	}
	return nil
}

// DeadMountError is the error for a mountpoint whose FUSE server is gone
// (a killed mount: stat says "transport endpoint is not connected"), with
// the one command that clears it.
func DeadMountError(mountpoint string) error {
	return fmt.Errorf("%w: %s is a dead mount (its process is gone: transport endpoint is not connected); clear it with: umount -l %s",
		ErrMountpoint, mountpoint, mountpoint)
}

// isMountpoint reports whether dir is listed in /proc/self/mountinfo.
func isMountpoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true, nil
		}
	}
	return false, s.Err()
}

// unescapeMountinfo undoes the kernel's octal escaping of spaces and the like.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
