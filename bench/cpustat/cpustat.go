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
	pids       []int
	procs      []int64 // clock ticks used by each of pids
}

// Take reads /proc/stat (all zero if it cannot), and the CPU time of each
// of the given processes so far (from /proc/PID/stat).
func Take(pids ...int) Sample {
	s := Sample{at: time.Now(), pids: pids}
	for _, pid := range pids {
		s.procs = append(s.procs, procTicks(pid))
	}
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

// procTicks is a process's user plus system time in clock ticks (0 if it
// cannot be read).
func procTicks(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields we want follow its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:])) // state ppid ... utime(12th) stime(13th)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// Usage is the CPU used between two samples.
type Usage struct {
	Busy  time.Duration   // CPU time spent by everything, summed over cores
	Idle  float64         // share of the machine's capacity left idle
	Procs []time.Duration // CPU time of each process given to Take, in order
}

const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux

// Since returns the usage from s to now.
func (s Sample) Since() Usage {
	e := Take(s.pids...)
	busy, idle := e.busy-s.busy, e.idle-s.idle
	u := Usage{Busy: time.Duration(busy) * tick}
	for i := range s.pids {
		u.Procs = append(u.Procs, time.Duration(e.procs[i]-s.procs[i])*tick)
	}
	if total := busy + idle; total > 0 {
		u.Idle = float64(idle) / float64(total)
	}
	return u
}

// PerMiB renders CPU time per MiB of work and the idle share, e.g.
// "1.76 ms CPU/MiB, 3% idle of 2 cores".
func (u Usage) PerMiB(bytes int) string {
	return fmt.Sprintf("%.2f ms CPU/MiB, %.0f%% idle of %d cores", MsPerMiB(u.Busy, bytes), 100*u.Idle, runtime.NumCPU())
}

// MsPerMiB is d milliseconds per MiB of bytes.
func MsPerMiB(d time.Duration, bytes int) float64 {
	return float64(d.Microseconds()) / 1000 / (float64(bytes) / (1 << 20))
}
