package blockstore

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Sum returns the Hash of p.
//
// Verifying blocks is most of the CPU a cold read costs, so Sum pairs up:
// with the SHA extensions, one core hashes two messages in about the time
// it hashes one (see internal/sumgen), so a Sum that starts while another
// is running hands its block to that one and sleeps, and the two are
// hashed together. Over a cold read, where the pool verifies several
// blocks at once, that halves the CPU verification takes and frees a core
// for the rest of the work.
//
// It hashes at most sumPiece bytes per lane between preemption points: the
// assembly cannot be preempted, and one call over a 4 MiB block would run
// for milliseconds; with many blocks being verified at once, every garbage
// collection then spins trying to stop those goroutines (measured: half
// the CPU of a cold read over S3 went to runtime.suspendG).
func Sum(p []byte) Hash {
	if !haveSum2 || len(p) < pairMin {
		return sum1(p)
	}
	return hasher.sum(p, nil, nil)
}

// sumPatient is Sum for a block nobody waits for yet (a prefetch): if no
// other Sum is running to pair it with, it waits for the next one rather
// than hash alone, until hurry or stop is closed (someone now waits for
// it, or the work is called off), or for maxPatience at most. A cold
// sequential read starts its prefetches one at a time, each as the reader
// moves on by a block, so without patience most would be hashed alone.
// Only one job waits at a time: the next patient one pairs with it.
func sumPatient(p []byte, hurry, stop <-chan struct{}) Hash {
	if !haveSum2 || len(p) < pairMin {
		return sum1(p)
	}
	return hasher.sum(p, hurry, stop)
}

const (
	// sumPiece is how much Sum hashes per lane between preemption points
	// (~35 µs).
	sumPiece = 64 << 10
	// pairMin is the smallest message worth pairing: below it, handing
	// over costs more than it saves.
	pairMin = 64 << 10
	// maxPatience bounds how long a prefetch's hashing waits for a
	// partner. Nobody waits for its result yet (a Get that does hurries
	// it), so the bound only matters to a mount going idle. Blocks from
	// S3 arrive some 2 ms apart in bench/s3.sh: there 2 ms paired 81 % of
	// the bytes, 20 ms 94 %.
	maxPatience = 20 * time.Millisecond
)

// sum1 hashes p on its own, sumPiece bytes at a time.
func sum1(p []byte) Hash {
	if len(p) <= sumPiece {
		return sha256.Sum256(p)
	}
	d := sha256.New()
	for len(p) > 0 {
		n := min(len(p), sumPiece)
		d.Write(p[:n])
		p = p[n:]
	}
	var h Hash
	d.Sum(h[:0])
	return h
}

// sumJob is one message being hashed: its state so far and what is left.
// Whoever holds it (its owner, or the goroutine that adopted it) is the
// only one touching it; it changes hands under pairer.mu or through done.
type sumJob struct {
	h    [8]uint32
	rest []byte // not yet hashed
	size uint64 // whole message length
	sum  Hash   // set when finished
	fin  bool
	// alone says its owner must hash the rest itself: it was being
	// hashed when a fault struck (see run).
	alone bool
	// done is closed when an adopter gives the job back, finished or not.
	done chan struct{}
}

func newSumJob(p []byte) *sumJob {
	return &sumJob{
		h:    [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19},
		rest: p, size: uint64(len(p)),
	}
}

// stepAlone hashes up to sumPiece more bytes of j alone, or finishes it.
func (j *sumJob) stepAlone() {
	if j.blocks() == 0 {
		j.finish()
		return
	}
	n := min(j.blocks(), sumPiece/64) * 64
	step(j, j, j.rest[:n])
	j.rest = j.rest[n:]
}

// blocks is how many whole 64-byte blocks are left.
func (j *sumJob) blocks() int { return len(j.rest) / 64 }

// finish hashes the last partial block and the padding.
func (j *sumJob) finish() {
	var tail [128]byte
	r := copy(tail[:], j.rest)
	tail[r] = 0x80
	n := 64
	if r >= 56 {
		n = 128
	}
	binary.BigEndian.PutUint64(tail[n-8:], j.size*8)
	step(j, j, tail[:n])
	for i, v := range j.h {
		binary.BigEndian.PutUint32(j.sum[4*i:], v)
	}
	j.rest, j.fin = nil, true
}

// step runs the block function over the whole blocks of pa (for a) and
// the same number of pb (for b); a and b may be the same job.
func step(a, b *sumJob, pa []byte) {
	var st [16]uint32
	copy(st[:8], a.h[:])
	copy(st[8:], b.h[:])
	pb := pa
	if b != a {
		pb = b.rest
	}
	blocks2(&st, &pa[0], &pb[0], len(pa)/64)
	copy(a.h[:], st[:8])
	if b != a {
		copy(b.h[:], st[8:])
	}
}

// pairer matches concurrent Sums. A hasher is a goroutine hashing its own
// job; while it has no partner it is "solo", and a Sum arriving then
// leaves its job in pending and sleeps until a hasher adopts it (a solo
// one, or the next Sum to arrive), hashes it alongside its own and gives
// it back. A hasher hashes for others only while its own job lasts: when
// its job is done it returns at once, and gives back a partner's
// unfinished job, whose owner wakes and carries on from where it was. So
// no caller ever waits on a block that is not its own for longer than its
// own takes.
type pairer struct {
	mu      sync.Mutex
	solo    int          // hashers that could adopt a job
	pending *sumJob      // a job waiting for one
	paired  atomic.Int64 // bytes hashed two at a time, for tests
	// patience overrides maxPatience (for tests, which cannot rely on
	// the next Sum coming within it).
	patience time.Duration
}

var hasher pairer

func (e *pairer) sum(p []byte, hurry, stop <-chan struct{}) Hash {
	j := newSumJob(p)
	var patience <-chan time.Time
	if hurry != nil {
		t := time.NewTimer(cmp.Or(e.patience, maxPatience))
		defer t.Stop()
		patience = t.C
	}
	for !j.fin && !j.alone {
		e.mu.Lock()
		if mate := e.pending; mate != nil {
			// Someone is waiting for a partner: be it.
			e.pending = nil
			e.mu.Unlock()
			e.run(j, mate, false)
			continue
		}
		if e.solo == 0 && hurry == nil {
			e.solo++
			e.mu.Unlock()
			e.run(j, nil, true)
			continue
		}
		// A hasher adopts it (a solo one, or the next Sum to arrive),
		// hashes it to the end or gives it back unfinished, to be carried
		// on from where it was.
		j.done = make(chan struct{})
		e.pending = j
		e.mu.Unlock()
		select {
		case <-j.done:
			continue
		case <-hurry:
		case <-stop:
		case <-patience:
		}
		// A patient job's result is wanted now (or it has waited long
		// enough): hash it, paired or not.
		hurry, stop, patience = nil, nil, nil
		e.mu.Lock()
		if e.pending == j {
			e.pending = nil
			e.mu.Unlock()
			continue
		}
		e.mu.Unlock()
		<-j.done // adopted meanwhile
	}
	for !j.fin {
		j.stepAlone()
	}
	return j.sum
}

// run hashes own, with mate alongside if given, until own is finished or
// mate is (then the caller pairs own up afresh, rather than hash it alone
// while another hasher may be alone too). solo says the caller counted it
// solo (it has no mate); it then adopts the first pending job.
//
// Messages may be mapped files, and a file cut short underneath faults
// when read. Its owner expects that fault in its own goroutine (the
// importer turns it into an error), not in whichever goroutine hashed its
// bytes, where it would crash the process or be blamed on the wrong file.
// So run turns faults into panics while it hashes, and on one gives both
// jobs back marked alone, unchanged since their last whole step: each
// owner then hashes its own, where a fault that was its own recurs.
func (e *pairer) run(own, mate *sumJob, solo bool) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if solo {
				e.leaveSolo()
			}
			own.alone = true
			if mate != nil {
				mate.alone = true
				close(mate.done)
			}
		}
	}()
	for {
		if solo {
			e.mu.Lock()
			if mate = e.pending; mate != nil {
				e.pending, solo = nil, false
				e.solo--
			}
			e.mu.Unlock()
		}
		switch {
		case own.blocks() == 0:
			own.finish()
			if solo {
				solo = false
				e.leaveSolo()
			}
			if mate != nil {
				close(mate.done) // finished or not, it is its owner's again
			}
			return
		case mate != nil && mate.blocks() == 0:
			mate.finish()
			close(mate.done)
			return
		case mate != nil:
			n := min(own.blocks(), mate.blocks(), sumPiece/64) * 64
			step(own, mate, own.rest[:n])
			own.rest, mate.rest = own.rest[n:], mate.rest[n:]
			e.paired.Add(2 * int64(n))
		default:
			own.stepAlone()
		}
	}
}

// leaveSolo uncounts a solo hasher. If it was the last, a pending job has
// nobody left to adopt it: its owner is woken to hash it.
func (e *pairer) leaveSolo() {
	e.mu.Lock()
	e.solo--
	var orphan *sumJob
	if e.solo == 0 && e.pending != nil {
		orphan, e.pending = e.pending, nil
	}
	e.mu.Unlock()
	if orphan != nil {
		close(orphan.done)
	}
}
