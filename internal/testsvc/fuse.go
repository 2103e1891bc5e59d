package testsvc

import (
	"os"
	"testing"
)

// RequireFUSE skips a test where FUSE cannot be mounted (mounts use
// DirectMount, which needs root, and /dev/fuse), but fails it under
// CI=true, where a missing FUSE must never pass silently.
func RequireFUSE(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "mounting with DirectMount needs root"
	} else if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		why = "no usable /dev/fuse: " + err.Error()
	} else {
		f.Close()
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("FUSE is required under CI=true: %s", why)
	}
	t.Skip(why)
}

// RequireRoot skips a test that needs root (to run a child as another
// user, to mount a tmpfs) when not root, but fails it under CI=true, which
// runs as root: there a missing privilege must never pass silently.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("root is required under CI=true: %s", why)
	}
	t.Skip(why)
}
