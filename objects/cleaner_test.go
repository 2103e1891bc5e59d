package objects

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
)

// churn writes keys with overwrites and deletes into small segments and
// returns the expected state.
func churn(t testing.TB, l *Log, r *rand.Rand, n, keys int) map[string]string {
	state := map[string]string{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k%04d", r.Intn(keys))
		if r.Intn(5) == 0 {
			if err := l.Delete([]byte(k)); err != nil {
				t.Fatal(err)
			}
			delete(state, k)
			continue
		}
		v := fmt.Sprintf("v%d-%x", i, r.Int63())
		if err := l.WriteKeys([][]byte{[]byte(k), []byte("s\x00" + k)}, []byte(v)); err != nil {
			t.Fatal(err)
		}
		state[k] = v
	}
	return state
}

func TestCleanerBasic(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4 << 10, Sync: SyncNone}
	l := openT(t, dir, opts)
	want := churn(t, l, rand.New(rand.NewSource(1)), 2000, 150)
	before := l.Stats()
	st, err := l.Clean(context.Background(), CleanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := l.Stats()
	if st.SegmentsCleaned == 0 || after.TotalBytes >= before.TotalBytes {
		t.Fatalf("nothing reclaimed: %+v\nbefore %+v\nafter %+v", st, before, after)
	}
	if got := dumpState(t, l); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("state changed by Clean")
	}
	// A second pass drops the tombstones whose segments are now gone.
	st2, err := l.Clean(context.Background(), CleanOptions{MaxLiveFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	if st2.TombstonesDropped == 0 {
		t.Fatalf("no tombstones dropped: %+v", st2)
	}
	// More writes after cleaning, then reopen.
	l.Write([]byte("post"), []byte("clean"))
	want["post"] = "clean"
	l.Close()
	l = openT(t, dir, opts)
	defer l.Close()
	if got := dumpState(t, l); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("state after reopen differs")
	}
}

// Deleted objects must not come back when the segment holding only their
// tombstone is cleaned before the segment holding the object.
func TestCleanerNoResurrection(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1, Sync: SyncNone} // one write per segment
	l := openT(t, dir, opts)
	l.Write([]byte("victim"), []byte("v1")) // segment A
	l.Write([]byte("victim"), []byte("v2")) // segment B: tombstone(A) + v2
	l.Delete([]byte("victim"))              // segment C: tombstone(B)
	l.Write([]byte("other"), []byte("o"))   // head
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		// Clean one segment at a time, in every order the scores give.
		if _, err := l.Clean(ctx, CleanOptions{MaxLiveFraction: 1, MaxSegments: 1}); err != nil {
			t.Fatal(err)
		}
		mustMissing(t, l, "victim")
		l2 := l
		l2.Sync()
		ro := openT(t, dir, Options{ReadOnly: true})
		mustMissing(t, ro, "victim")
		mustRead(t, ro, "other", "o")
		ro.Close()
	}
	l.Close()
	l = openT(t, dir, opts)
	defer l.Close()
	mustMissing(t, l, "victim")
}

// Every intermediate on-disk state of a Clean must reopen to the same data.
func TestCleanerCrashPoints(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 2 << 10, Sync: SyncNone}
	l := openT(t, dir, opts)
	want := fmt.Sprint(churn(t, l, rand.New(rand.NewSource(7)), 600, 60))
	l.Sync()
	var snaps []string
	cleanHook = func(stage string) {
		snap := t.TempDir()
		copyDir(t, dir, snap)
		snaps = append(snaps, snap)
	}
	defer func() { cleanHook = func(string) {} }()
	if _, err := l.Clean(context.Background(), CleanOptions{MaxLiveFraction: 1}); err != nil {
		t.Fatal(err)
	}
	cleanHook = func(string) {}
	l.Close()
	if len(snaps) < 3 {
		t.Fatalf("only %d crash points", len(snaps))
	}
	for i, snap := range snaps {
		os_Remove(snap + "/LOCK")
		l := openT(t, snap, opts)
		if got := fmt.Sprint(dumpState(t, l)); got != want {
			t.Fatalf("crash point %d: state differs", i)
		}
		// And cleaning again from there converges.
		if _, err := l.Clean(context.Background(), CleanOptions{MaxLiveFraction: 1}); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(dumpState(t, l)); got != want {
			t.Fatalf("crash point %d, recleaned: state differs", i)
		}
		l.Close()
	}
}

// Reads, writes and the cleaner at the same time (run with -race).
func TestCleanerConcurrent(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentSize: 4 << 10, Sync: SyncNone})
	defer l.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	// Stable keys: never change, must always be readable.
	for i := 0; i < 50; i++ {
		l.WriteKeys([][]byte{[]byte(fmt.Sprintf("stable%02d", i)), []byte("st\x00" + fmt.Sprint(i))}, []byte(fmt.Sprint(i)))
	}
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(g)))
			for !stop.Load() {
				churn(t, l, r, 20, 40)
			}
		}()
	}
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for i := 0; i < 50; i++ {
					mustRead(t, l, fmt.Sprintf("stable%02d", i), fmt.Sprint(i))
				}
				n := 0
				if err := l.Scan(1, []byte("st\x00"), func(Object) bool { n++; return true }); err != nil || n != 50 {
					t.Errorf("scan: %d %v", n, err)
				}
			}
		}()
	}
	var cleaned int
	for i := 0; i < 30 || cleaned == 0 && i < 1e6; i++ {
		st, err := l.Clean(context.Background(), CleanOptions{MaxLiveFraction: 0.95})
		if err != nil {
			t.Fatal(err)
		}
		cleaned += st.SegmentsCleaned
	}
	stop.Store(true)
	wg.Wait()
	if cleaned == 0 {
		t.Fatal("nothing cleaned")
	}
	want := fmt.Sprint(dumpState(t, l))
	l.Sync()
	ro := openT(t, dir, Options{ReadOnly: true})
	defer ro.Close()
	if got := fmt.Sprint(dumpState(t, ro)); got != want {
		t.Fatal("reopened state differs after concurrent cleaning")
	}
}

func TestReadOnlyRefresh(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 2 << 10, Sync: SyncNone}
	w := openT(t, dir, opts)
	defer w.Close()
	r := rand.New(rand.NewSource(9))
	state := churn(t, w, r, 200, 40)
	ro := openT(t, dir, Options{ReadOnly: true})
	defer ro.Close()
	if fmt.Sprint(dumpState(t, ro)) != fmt.Sprint(state) {
		t.Fatal("initial ReadOnly state")
	}
	for round := 0; round < 5; round++ {
		for k, v := range churn(t, w, r, 100, 40) {
			state[k] = v
		}
		state = dumpState(t, w) // deletes included
		// Clean while the reader still points into the old segments: its
		// reads keep working through its open descriptors.
		if _, err := w.Clean(context.Background(), CleanOptions{MaxLiveFraction: 1}); err != nil {
			t.Fatal(err)
		}
		ro.Scan(0, nil, func(o Object) bool { return true })
		if err := ro.Refresh(); err != nil {
			t.Fatal(err)
		}
		if got := dumpState(t, ro); fmt.Sprint(got) != fmt.Sprint(state) {
			t.Fatalf("round %d: ReadOnly state after Refresh differs:\n%v\n%v", round, got, state)
		}
	}
	// Old descriptors drain: the reader holds no more segments than exist.
	if a, b := ro.Stats().Segments, w.Stats().Segments; a != b {
		t.Fatalf("reader has %d segments, writer %d", a, b)
	}
}
