package cpustat

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CPUs returns the CPUs this process may run on, in order.
func CPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}

// Pin restricts every thread of process pid to cpus, as `taskset -a -p`
// does; threads it starts later inherit that. A benchmark pins a server
// and the client to different cores so that they stop competing for the
// same ones, as they would not on separate machines.
func Pin(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	// Threads started while we pin may copy an unpinned one's mask: go
	// round until a pass finds no thread it has not seen.
	seen := map[int]bool{}
	for {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			return fmt.Errorf("pin %d: %w", pid, err)
		}
		fresh := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || seen[tid] {
				continue
			}
			seen[tid], fresh = true, true
			// A thread may exit between listing and pinning; that is fine.
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pin %d thread %d to %v: %w", pid, tid, cpus, err)
			}
		}
		if !fresh {
			return nil
		}
	}
}
