package procs

import (
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	line := []byte("1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0 99 123456 300 18446744073709551615\n")
	u, err := parseStat(line, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUSeconds != 3 || u.Threads != 7 || u.RSSBytes != 300*4096 {
		t.Fatalf("parsed %+v", u)
	}
	if _, err := parseStat([]byte("1 (x) S 1"), 4096); err == nil {
		t.Error("a short stat line parsed")
	}
}

// TestSelf: this process's CPU time grows while it spins (CPU time moves
// in 10 ms ticks, so it spins until it does, up to a deadline), and it has
// some resident memory and a thread.
func TestSelf(t *testing.T) {
	a, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if a.RSSBytes < 1<<20 || a.Threads < 1 {
		t.Fatalf("usage %+v", a)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := Self()
		if err != nil {
			t.Fatal(err)
		}
		if b.CPUSeconds > a.CPUSeconds {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %v while spinning for 10s", a.CPUSeconds)
		}
	}
}
