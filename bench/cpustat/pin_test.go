package cpustat

import (
	"os"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPin pins every thread of this process to one CPU, checks each
// thread's mask, and lets them all run everywhere again.
func TestPin(t *testing.T) {
	cpus, err := CPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) == 0 {
		t.Fatal("CPUs() is empty")
	}
	pid := os.Getpid()
	masks := func() map[int][]int {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			t.Fatal(err)
		}
		m := map[int][]int{}
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &set); err != nil {
				continue // exited meanwhile
			}
			for _, c := range cpus {
				if set.IsSet(c) {
					m[tid] = append(m[tid], c)
				}
			}
		}
		return m
	}
	last := cpus[len(cpus)-1:]
	if err := Pin(pid, last); err != nil {
		t.Fatal(err)
	}
	for tid, got := range masks() {
		if !slices.Equal(got, last) {
			t.Errorf("thread %d may run on %v after Pin(%v)", tid, got, last)
		}
	}
	if err := Pin(pid, cpus); err != nil {
		t.Fatal(err)
	}
	for tid, got := range masks() {
		if !slices.Equal(got, cpus) {
			t.Errorf("thread %d may run on %v after Pin(%v)", tid, got, cpus)
		}
	}
	if err := Pin(1<<22, cpus); err == nil {
		t.Error("Pin of a process that does not exist: no error")
	}
}
