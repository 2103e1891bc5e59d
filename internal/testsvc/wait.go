package testsvc

import (
	"runtime"
	"testing"
	"time"
)

// WaitFor spins (yielding) until cond holds, failing t after 10 seconds.
// It observes state; it is not a sleep standing in for synchronisation.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}
