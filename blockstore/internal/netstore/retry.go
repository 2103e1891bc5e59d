package netstore

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
//
// Overload answers (Busy) are the exception: a server that says "later" is
// alive and will serve the call once the burst is over, so giving up after
// MaxAttempts would turn a queue into errors. They are retried until the
// caller's context ends (a Pool's fetch deadline) and do not count against
// MaxAttempts; without a deadline, for at most BusyFor.
type Retry struct {
	MaxAttempts int           // attempts per call, the first included (at least 1)
	Timeout     time.Duration // per attempt; 0 means the attempt bounds itself
	Base, Max   time.Duration // backoff before retry n: uniform in [0, min(Max, Base·2^(n−1))]
	// Transient says which failures are worth another attempt.
	Transient func(error) bool
	// Busy, if set, says which transient failures are overload answers
	// (HTTP 503), retried until the context ends.
	Busy func(error) bool
	// BusyFor bounds the retries of overload answers when the context has
	// no deadline (default DefaultBusyFor).
	BusyFor time.Duration
	// After, if set, returns the wait a failure asked for (HTTP
	// Retry-After); it is capped at Max, plus up to a quarter of jitter so
	// that a crowd told to come back in a second does not all return at once.
	// Zero means "no wait given": the backoff applies.
	After func(error) (time.Duration, bool)
	// Describe renders an error in one line inside the errors Do wraps
	// (default: its Error()).
	Describe func(error) string
	// Retries, if set, counts the retries.
	Retries *atomic.Int64
	// FailFast ends a call after its first failed attempt unless that
	// failure is an overload answer (retried as always): for a caller
	// with other servers to try (blockstore/tier), a retry on the server
	// that just failed is a delay spent where the next one would answer.
	FailFast bool
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

// StoppedError is a call whose context ended while it was still failing.
// It wraps both the context's error (context.DeadlineExceeded: the fetch
// deadline passed) and the last attempt's, so a caller can tell "the server
// was overloaded the whole time" (blockstore.ErrBusy) from other causes.
type StoppedError struct {
	Attempts int
	Ctx      error // ctx.Err()
	Last     error // the last failure (not the context cutting an attempt off)
	describe func(error) string
}

func (e *StoppedError) Error() string {
	return fmt.Sprintf("%v after %d attempts (last attempt: %s)", e.Ctx, e.Attempts, e.describe(e.Last))
}
func (e *StoppedError) Unwrap() []error { return []error{e.Ctx, e.Last} }

// Do runs attempt until it succeeds, fails for good, runs out of attempts,
// or ctx ends. attempts, if set, counts every attempt.
func (r *Retry) Do(ctx context.Context, attempts *atomic.Int64, attempt func(ctx context.Context) error) error {
	describe := r.Describe
	if describe == nil {
		describe = func(err error) string { return err.Error() }
	}
	start := time.Now()
	failed := 0 // attempts that failed for another reason than overload
	var last error
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			if last != nil { // (ended during the wait's last instant)
				return &StoppedError{Attempts: n - 1, Ctx: err, Last: last, describe: describe}
			}
			return err
		}
		if attempts != nil {
			attempts.Add(1)
		}
		err, timedOut := r.try(ctx, attempt)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			if last != nil && errors.Is(err, ctx.Err()) {
				err = last // cut off mid-attempt: the answer before says why
			}
			return &StoppedError{Attempts: n, Ctx: ctx.Err(), Last: err, describe: describe}
		}
		if timedOut {
			err = &AttemptTimeoutError{Timeout: r.Timeout, Err: err}
		}
		if !r.Transient(err) {
			return err
		}
		if !r.overloaded(ctx, err, start) {
			failed++
			if failed >= r.MaxAttempts || r.isBusy(err) || r.FailFast {
				return &GaveUpError{Attempts: n, Err: err, describe: describe}
			}
		}
		if r.Retries != nil {
			r.Retries.Add(1)
		}
		last = err
		t := time.NewTimer(r.wait(n, err))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return &StoppedError{Attempts: n, Ctx: ctx.Err(), Last: err, describe: describe}
		}
	}
}

// try runs one attempt under the attempt timeout; timedOut says the attempt
// (not the caller's context) ran out of time.
func (r *Retry) try(ctx context.Context, attempt func(ctx context.Context) error) (err error, timedOut bool) {
	actx, cancel := ctx, context.CancelFunc(func() {})
	if r.Timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, r.Timeout)
	}
	defer cancel()
	err = attempt(actx)
	return err, actx.Err() != nil && ctx.Err() == nil
}

// overloaded reports whether err is an overload answer that may still be
// retried: until ctx's deadline, or BusyFor after start without one.
func (r *Retry) overloaded(ctx context.Context, err error, start time.Time) bool {
	if r.MaxAttempts <= 1 || !r.isBusy(err) {
		return false // (MaxAttempts 1 means no retries at all)
	}
	if _, ok := ctx.Deadline(); ok {
		return true
	}
	busyFor := r.BusyFor
	if busyFor <= 0 {
		busyFor = DefaultBusyFor
	}
	return time.Since(start) < busyFor
}

func (r *Retry) isBusy(err error) bool { return r.Busy != nil && r.Busy(err) }

// wait returns the pause before retry n (n >= 1) after err.
func (r *Retry) wait(n int, err error) time.Duration {
	if r.After != nil {
		// A wait of 0 ("Retry-After: 0") takes the backoff instead: a
		// busy server is not to be hammered in a tight loop.
		if d, ok := r.After(err); ok && d > 0 {
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
