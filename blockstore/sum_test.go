package blockstore

import (
	"crypto/sha256"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"testing"
	"time"
)

func randomBytes(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, 7))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// Every length class: empty, the padding boundaries (55/56/63/64), below
// and above pairMin and sumPiece, and odd sizes in between.
var sumLengths = []int{0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000,
	pairMin - 1, pairMin, pairMin + 1, pairMin + 55, pairMin + 56, 3*sumPiece + 17, 1<<20 + 63, 4 << 20}

func TestSumMatchesSHA256(t *testing.T) {
	for _, n := range sumLengths {
		p := randomBytes(uint64(n), n)
		if got, want := Sum(p), Hash(sha256.Sum256(p)); got != want {
			t.Errorf("Sum of %d bytes = %v, want %v", n, got, want)
		}
		if got, want := sum1(p), Hash(sha256.Sum256(p)); got != want {
			t.Errorf("sum1 of %d bytes = %v, want %v", n, got, want)
		}
	}
}

// TestSumPairs drives the pairing by hand: a hasher counted solo, a Sum
// that therefore leaves its job pending, and the hasher that adopts it.
// The adopter's own job is short, so it gives the other back unfinished
// and its owner completes it.
func TestSumPairs(t *testing.T) {
	if !haveSum2 {
		t.Skip("no SHA extensions on this CPU: Sum does not pair")
	}
	var e pairer
	long := randomBytes(1, 4<<20+5)
	short := randomBytes(2, 2*sumPiece+9)

	e.mu.Lock()
	e.solo = 1 // the hasher below, about to start
	e.mu.Unlock()
	got := make(chan Hash)
	go func() { got <- e.sum(long, nil, nil) }()
	waitFor(t, "the Sum to find a solo hasher and park its job", e.hasPending)
	own := newSumJob(short)
	e.run(own, nil, true)
	if own.sum != Hash(sha256.Sum256(short)) {
		t.Errorf("adopter's own sum wrong")
	}
	if h := <-got; h != Hash(sha256.Sum256(long)) {
		t.Errorf("adopted (and given back) sum wrong")
	}
	if n := e.paired.Load(); n != 2*2*sumPiece {
		t.Errorf("paired %d bytes, want %d (both lanes for the short job's whole blocks)", n, 2*2*sumPiece)
	}
	if e.solo != 0 || e.pending != nil {
		t.Errorf("pairer left with solo %d, pending %v", e.solo, e.pending != nil)
	}
}

// TestSumConcurrent hashes messages of mixed sizes from many goroutines at
// once, through the shared pairer, and checks every one.
func TestSumConcurrent(t *testing.T) {
	msgs := make([][]byte, 48)
	for i := range msgs {
		msgs[i] = randomBytes(uint64(i), pairMin+i*37*1024+i)
	}
	var wg sync.WaitGroup
	for round := 0; round < 4; round++ {
		for i, m := range msgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if Sum(m) != Hash(sha256.Sum256(m)) {
					t.Errorf("message %d: wrong sum", i)
				}
			}()
		}
	}
	wg.Wait()
	hasher.mu.Lock()
	defer hasher.mu.Unlock()
	if hasher.solo != 0 || hasher.pending != nil {
		t.Errorf("pairer left with solo %d, pending %v", hasher.solo, hasher.pending != nil)
	}
}

func FuzzSum(f *testing.F) {
	f.Add([]byte(""), uint16(0))
	f.Add([]byte("abc"), uint16(55))
	f.Fuzz(func(t *testing.T, seed []byte, extra uint16) {
		// Stretch the input past pairMin so that the paired path runs too.
		p := append(append([]byte(nil), seed...), randomBytes(uint64(len(seed)), int(extra)*4)...)
		if Sum(p) != Hash(sha256.Sum256(p)) {
			t.Fatalf("Sum of %d bytes differs from crypto/sha256", len(p))
		}
	})
}

func BenchmarkSum4MiB(b *testing.B) {
	p := make([]byte, 4<<20)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		Sum(p)
	}
}

func BenchmarkSHA256Sum256_4MiB(b *testing.B) {
	p := make([]byte, 4<<20)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		sha256.Sum256(p)
	}
}

// BenchmarkSumConcurrent hashes 1 MiB blocks from two goroutines per P, as
// a pool verifying several blocks at once does, with Sum (which pairs) and
// with crypto/sha256 (which does not), side by side. cpu-ms/GiB is the
// process's CPU time, the figure pairing lowers even where the elapsed
// time is bound by something else.
func BenchmarkSumConcurrent(b *testing.B) {
	for _, c := range []struct {
		name string
		sum  func([]byte) Hash
	}{
		{"Sum", Sum},
		{"sha256", func(p []byte) Hash { return sha256.Sum256(p) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := randomBytes(1, 1<<20)
			b.SetBytes(int64(len(p)))
			b.SetParallelism(2)
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.sum(p)
				}
			})
			b.ReportMetric(float64(processCPU()-cpu0)/1e6/(float64(b.N)/1024), "cpu-ms/GiB")
		})
	}
}

// processCPU is the process's user and system time so far, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestSumFaultStaysWithItsOwner pairs a good block with a mapped file cut
// short underneath (reading it raises SIGBUS). The hasher that adopted the
// bad one must still return its own correct sum, and the fault must reach
// the bad block's owner, in its goroutine, as the importer expects.
func TestSumFaultStaysWithItsOwner(t *testing.T) {
	if !haveSum2 {
		t.Skip("no SHA extensions on this CPU: Sum does not pair")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "cut"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 1 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	mapped, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mapped)
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}

	var e pairer
	e.mu.Lock()
	e.solo = 1 // the hasher below
	e.mu.Unlock()
	fault := make(chan any)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() { fault <- recover() }()
		e.sum(mapped, nil, nil)
	}()
	waitFor(t, "the Sum to park its job", e.hasPending)
	good := randomBytes(3, 2<<20)
	own := newSumJob(good)
	e.run(own, nil, true) // adopts the cut file, faults, gives both back
	if !own.alone {
		t.Fatal("the hasher's own job was not handed back to be hashed alone after the fault")
	}
	for !own.fin {
		own.stepAlone()
	}
	if own.sum != Hash(sha256.Sum256(good)) {
		t.Error("the hasher's own sum is wrong after its partner faulted")
	}
	r := <-fault
	re, ok := r.(runtime.Error)
	if _, hasAddr := re.(interface{ Addr() uintptr }); !ok || !hasAddr {
		t.Errorf("the cut file's owner got %v, want a memory fault", r)
	}
	if e.solo != 0 || e.pending != nil {
		t.Errorf("pairer left with solo %d, pending %v", e.solo, e.pending != nil)
	}
}

// hasPending says whether a job waits in e for a partner (tests wait
// for it with waitFor).
func (e *pairer) hasPending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pending != nil
}

// TestSumPatient: a patient job (a prefetch's) with nobody to pair with
// waits, pairs with the next Sum that comes, and is hashed at once when
// hurried instead.
func TestSumPatient(t *testing.T) {
	if !haveSum2 {
		t.Skip("no SHA extensions on this CPU: Sum does not pair")
	}
	a, b := randomBytes(4, 1<<20), randomBytes(5, 1<<20+100)
	t.Run("pairs with the next Sum", func(t *testing.T) {
		e := pairer{patience: time.Hour}
		got := make(chan Hash)
		go func() { got <- e.sum(a, make(chan struct{}), nil) }()
		waitFor(t, "the patient Sum to wait rather than hash alone", e.hasPending)
		if e.sum(b, nil, nil) != Hash(sha256.Sum256(b)) {
			t.Error("the second Sum is wrong")
		}
		if <-got != Hash(sha256.Sum256(a)) {
			t.Error("the patient Sum is wrong")
		}
		if n := e.paired.Load(); n != 2*int64(len(a)) {
			t.Errorf("paired %d bytes, want %d: the patient job was not hashed alongside", n, 2*len(a))
		}
	})
	t.Run("hurried", func(t *testing.T) {
		var e pairer
		hurry := make(chan struct{})
		got := make(chan Hash)
		go func() { got <- e.sum(a, hurry, nil) }()
		waitFor(t, "the Sum to park its job", e.hasPending)
		close(hurry)
		if <-got != Hash(sha256.Sum256(a)) {
			t.Error("the hurried Sum is wrong")
		}
		if e.paired.Load() != 0 || e.pending != nil || e.solo != 0 {
			t.Errorf("pairer after a hurried Sum: paired %d, pending %v, solo %d", e.paired.Load(), e.pending != nil, e.solo)
		}
	})
}

// BenchmarkBlocks2 is the two-lane block function alone over two 4 MiB
// messages (compare BenchmarkSHA256Sum256_4MiB, one message): what one
// core gives when every block has a partner.
func BenchmarkBlocks2(b *testing.B) {
	if !haveSum2 {
		b.Skip("no SHA extensions on this CPU")
	}
	x, y := make([]byte, 4<<20), make([]byte, 4<<20)
	var h [16]uint32
	b.SetBytes(int64(len(x) + len(y)))
	for b.Loop() {
		for off := 0; off < len(x); off += sumPiece {
			blocks2(&h, &x[off], &y[off], sumPiece/64)
		}
	}
}
