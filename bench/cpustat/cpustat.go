// Package cpustat measures the whole machine's CPU use around a piece of
// work, from /proc/stat: how much CPU time every process and the kernel
// spent, and how much was left idle. The benchmarks print it next to
// throughput, because on a 2-core machine "this is CPU-bound" is a claim
// to show, not to assume.
package cpustat

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Sample is a reading of the machine's cumulative CPU counters.
type Sample struct {
	busy, idle int64 // clock ticks
	at         time.Time
}

// Take reads /proc/stat (all zero if it cannot).
func Take() Sample {
	s := Sample{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i := 1; i < len(f) && i <= 8; i++ {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		if i == 4 || i == 5 { // idle, iowait
			s.idle += v
		} else {
			s.busy += v
		}
	}
	return s
}

// Usage is the CPU used between two samples.
type Usage struct {
	Busy time.Duration // CPU time spent by everything, summed over cores
	Idle float64       // share of the machine's capacity left idle
}

// Since returns the usage from s to now.
func (s Sample) Since() Usage {
	e := Take()
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	busy, idle := e.busy-s.busy, e.idle-s.idle
	u := Usage{Busy: time.Duration(busy) * tick}
	if total := busy + idle; total > 0 {
		u.Idle = float64(idle) / float64(total)
	}
	return u
}

// PerMiB renders CPU time per MiB of work and the idle share, e.g.
// "1.76 ms CPU/MiB, 3% idle of 2 cores".
func (u Usage) PerMiB(bytes int) string {
	ms := float64(u.Busy.Microseconds()) / 1000 / (float64(bytes) / (1 << 20))
	return fmt.Sprintf("%.2f ms CPU/MiB, %.0f%% idle of %d cores", ms, 100*u.Idle, runtime.NumCPU())
}
