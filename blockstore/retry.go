package blockstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Retry is the retry policy of the stores that talk over a network (S3,
// blockfs serve): every attempt runs under its own timeout, transient
// failures are retried after a full-jitter exponential backoff (or the wait
// the server asked for), and a call that keeps failing ends within
// MaxAttempts × Timeout + (MaxAttempts−1) × Max, or when its context does.
type Retry struct {
	MaxAttempts int           // attempts per call, the first included (at least 1)
	Timeout     time.Duration // per attempt; 0 means the attempt bounds itself
	Base, Max   time.Duration // backoff before retry n: uniform in [0, min(Max, Base·2^(n−1))]
	// Transient says which failures are worth another attempt.
	Transient func(error) bool
	// After, if set, returns the wait a failure asked for (HTTP
	// Retry-After); it is capped at Max, plus up to a quarter of jitter so
	// that a crowd told to come back in a second does not all return at once.
	After func(error) (time.Duration, bool)
	// Describe renders an error in one line inside the errors Do wraps
	// (default: its Error()).
	Describe func(error) string
	// Retries, if set, counts the retries.
	Retries *atomic.Int64
}

// AttemptTimeoutError marks an attempt that ran out of its Timeout.
type AttemptTimeoutError struct {
	Timeout time.Duration
	Err     error
}

func (e *AttemptTimeoutError) Error() string {
	return fmt.Sprintf("attempt timed out after %v: %v", e.Timeout, e.Err)
}
func (e *AttemptTimeoutError) Unwrap() error { return e.Err }

// GaveUpError wraps the last error of a call that failed every attempt.
type GaveUpError struct {
	Attempts int
	Err      error
	describe func(error) string
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("gave up after %d attempts: %s", e.Attempts, e.describe(e.Err))
}
func (e *GaveUpError) Unwrap() error { return e.Err }

// Do runs attempt until it succeeds, fails for good, runs out of attempts,
// or ctx ends. attempts, if set, counts every attempt.
func (r *Retry) Do(ctx context.Context, attempts *atomic.Int64, attempt func(ctx context.Context) error) error {
	describe := r.Describe
	if describe == nil {
		describe = func(err error) string { return err.Error() }
	}
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if attempts != nil {
			attempts.Add(1)
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if r.Timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, r.Timeout)
		}
		err := attempt(actx)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last attempt: %s)", ctx.Err(), describe(err))
		}
		if timedOut {
			err = &AttemptTimeoutError{Timeout: r.Timeout, Err: err}
		}
		if !r.Transient(err) {
			return err
		}
		if n >= r.MaxAttempts {
			return &GaveUpError{Attempts: n, Err: err, describe: describe}
		}
		if r.Retries != nil {
			r.Retries.Add(1)
		}
		t := time.NewTimer(r.wait(n, err))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %s)", ctx.Err(), describe(err))
		}
	}
}

// wait returns the pause before retry n (n >= 1) after err.
func (r *Retry) wait(n int, err error) time.Duration {
	if r.After != nil {
		if d, ok := r.After(err); ok {
			d = min(d, r.Max)
			return d + time.Duration(rand.Int64N(int64(d/4)+1))
		}
	}
	d := r.Max
	if n < 30 {
		d = min(r.Max, r.Base<<(n-1))
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// IsAttemptTimeout reports whether err came from an attempt that ran out
// of its own timeout (as opposed to the caller's context).
func IsAttemptTimeout(err error) bool {
	var at *AttemptTimeoutError
	return errors.As(err, &at)
}
