// Package procs is about the blockfs process itself: the one scheduler
// setting its commands share (More) and what it costs the machine (Self).
//
// It is its own package because the CLI and the benchmarks (which must run
// the mount as the CLI does) both need More.
package procs

import (
	"os"
	"runtime"
	"sync"
)

// More doubles GOMAXPROCS, unless the GOMAXPROCS environment variable
// sets it, for a process whose CPU-bound hashing runs beside a path that
// must not wait: a mount's requests, which block in read(2) on /dev/fuse,
// or an import's single chunking goroutine, which feeds every worker. With
// one P per CPU, such a goroutine waits for a hashing one to be preempted
// (Go's scheduler does that every 10 ms); with spare Ps the kernel's
// scheduler runs its thread at once. docs/performance.md has the
// measurements, and what was tried instead (hashing in smaller pieces).
// It acts once per process, however often it is called.
func More() { more() }

var more = sync.OnceFunc(func() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0))
	}
})
