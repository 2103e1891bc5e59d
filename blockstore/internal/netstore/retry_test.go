package netstore

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var (
	errBusy  = errors.New("busy")
	errFlaky = errors.New("flaky")
)

func testRetry() Retry {
	return Retry{
		MaxAttempts: 3, Base: time.Microsecond, Max: time.Millisecond,
		Transient: func(error) bool { return true },
		Busy:      func(err error) bool { return errors.Is(err, errBusy) },
	}
}

// failing returns an attempt that fails with err n times, then succeeds.
func failing(n int, err error) func(context.Context) error {
	var calls atomic.Int64
	return func(context.Context) error {
		if calls.Add(1) <= int64(n) {
			return err
		}
		return nil
	}
}

func TestRetryBusyNotCountedAgainstMaxAttempts(t *testing.T) {
	r := testRetry()
	var attempts atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Do(ctx, &attempts, failing(20, errBusy)); err != nil || attempts.Load() != 21 {
		t.Fatalf("20 busy answers then success: %v after %d attempts, want nil after 21", err, attempts.Load())
	}
	attempts.Store(0)
	err := r.Do(ctx, &attempts, failing(20, errFlaky))
	var gu *GaveUpError
	if !errors.As(err, &gu) || gu.Attempts != 3 || attempts.Load() != 3 {
		t.Fatalf("flaky: %v after %d attempts, want to give up after 3", err, attempts.Load())
	}
	// MaxAttempts 1 means no retries, busy or not.
	r.MaxAttempts = 1
	attempts.Store(0)
	if err := r.Do(ctx, &attempts, failing(1, errBusy)); !errors.Is(err, errBusy) || attempts.Load() != 1 {
		t.Fatalf("MaxAttempts 1, busy: %v after %d attempts, want errBusy after 1", err, attempts.Load())
	}
}

func TestRetryBusyUntilDeadline(t *testing.T) {
	r := testRetry()
	var attempts atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := r.Do(ctx, &attempts, failing(1<<30, errBusy))
	var st *StoppedError
	if !errors.As(err, &st) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errBusy) {
		t.Fatalf("always busy: %v; want a StoppedError wrapping DeadlineExceeded and the busy answer", err)
	}
	if n := attempts.Load(); n <= 3 || int64(st.Attempts) != n || !strings.Contains(err.Error(), "attempts") {
		t.Fatalf("always busy: %d attempts, error says %d (%v)", n, st.Attempts, err)
	}
}

func TestRetryBusyWithoutDeadline(t *testing.T) {
	r := testRetry()
	r.BusyFor = 20 * time.Millisecond
	var attempts atomic.Int64
	start := time.Now()
	err := r.Do(context.Background(), &attempts, failing(1<<30, errBusy))
	var gu *GaveUpError
	if !errors.As(err, &gu) || !errors.Is(err, errBusy) || attempts.Load() <= 3 {
		t.Fatalf("always busy, no deadline: %v after %d attempts; want to give up after BusyFor", err, attempts.Load())
	}
	if took := time.Since(start); took < r.BusyFor {
		t.Fatalf("gave up after %v, before BusyFor %v", took, r.BusyFor)
	}
}

func TestRetryAfterZeroBacksOff(t *testing.T) {
	r := testRetry()
	r.Base, r.Max = time.Second, time.Second
	r.After = func(error) (time.Duration, bool) { return 0, true }
	longest := time.Duration(0)
	for range 20 {
		d := r.wait(1, errBusy)
		if d < 0 || d > time.Second {
			t.Fatalf("Retry-After 0: wait %v, want backoff in [0, 1s]", d)
		}
		longest = max(longest, d)
	}
	if longest == 0 {
		t.Fatal("Retry-After 0: 20 waits of 0, want the backoff (uniform in [0, 1s])")
	}
	r.After = func(error) (time.Duration, bool) { return 400 * time.Millisecond, true }
	if d := r.wait(1, errBusy); d < 400*time.Millisecond || d > 500*time.Millisecond {
		t.Fatalf("Retry-After 400ms: wait %v, want 400..500ms", d)
	}
}

// A deadline that cuts an attempt off mid-way still says what the answers
// before were (here: busy), not only that the context ended.
func TestRetryStoppedMidAttemptKeepsLastAnswer(t *testing.T) {
	r := testRetry()
	var calls atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := r.Do(ctx, nil, func(actx context.Context) error {
		if calls.Add(1) == 1 {
			return errBusy
		}
		<-actx.Done()
		return actx.Err()
	})
	var st *StoppedError
	if !errors.As(err, &st) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errBusy) || st.Attempts != 2 {
		t.Fatalf("deadline mid-attempt after a busy answer: %v; want a StoppedError after 2 attempts wrapping DeadlineExceeded and errBusy", err)
	}
}
