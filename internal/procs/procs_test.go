package procs

import (
	"os"
	"runtime"
	"testing"
)

// TestMoreOnce: however often commands call it (the CLI's tests run many
// in one process), GOMAXPROCS is doubled once.
func TestMoreOnce(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set in the environment: More leaves it alone")
	}
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	More()
	More()
	More()
	if got := runtime.GOMAXPROCS(0); got != 2*before {
		t.Fatalf("GOMAXPROCS %d after three calls, want %d", got, 2*before)
	}
}
