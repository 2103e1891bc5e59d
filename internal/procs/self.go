package procs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Usage is what the process costs the machine, for `blockfs stats`.
type Usage struct {
	CPUSeconds float64 `json:"cpu_seconds"` // user + system CPU time since start
	RSSBytes   int64   `json:"rss_bytes"`   // resident memory (mapped block files included)
	Threads    int64   `json:"threads"`
}

// userHZ is the unit of /proc's CPU times: fixed at 100 on Linux whatever
// the kernel's own tick (USER_HZ, see proc(5)).
const userHZ = 100

// Self reads the process's own usage from /proc/self.
func Self() (Usage, error) {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return Usage{}, fmt.Errorf("process usage: %w", err)
	}
	return parseStat(raw, int64(os.Getpagesize()))
}

// parseStat reads utime, stime, num_threads and rss (fields 14, 15, 20
// and 24) from a /proc/PID/stat line. The command name (field 2) may hold
// spaces and parentheses, so fields are counted after its last ')'.
func parseStat(raw []byte, pageSize int64) (Usage, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return Usage{}, fmt.Errorf("process usage: unreadable /proc stat")
	}
	f := bytes.Fields(raw[i+1:]) // f[0] is field 3
	field := func(n int) (int64, error) {
		if n-3 >= len(f) {
			return 0, fmt.Errorf("process usage: /proc stat has no field %d", n)
		}
		return strconv.ParseInt(string(f[n-3]), 10, 64)
	}
	var v [4]int64
	for k, n := range []int{14, 15, 20, 24} {
		x, err := field(n)
		if err != nil {
			return Usage{}, err
		}
		v[k] = x
	}
	return Usage{CPUSeconds: float64(v[0]+v[1]) / userHZ, Threads: v[2], RSSBytes: v[3] * pageSize}, nil
}
