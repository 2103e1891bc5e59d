package logx

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DedupKey is the attribute that names what failed: records with the same
// message and the same DedupKey value are one failure repeating (a corrupt
// block fails every read of it, whichever file or offset asked). Records
// without it are keyed by message and all their attributes.
const DedupKey = "block"

// maxKeys bounds the limiter's memory: past it, records pass unlimited
// until the interval frees keys, so a storm of distinct failures is still
// seen, just not summarised.
const maxKeys = 4096

// RateLimiter is a slog.Handler that writes the first record of each
// failure and then, once per interval, one summary record carrying
// "repeated=N" for the copies it held back. Records below Warn pass
// untouched: only failures repeat at the rate of reads.
type RateLimiter struct {
	next     slog.Handler
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	seen  map[string]*burst
	quit  chan struct{}
	done  chan struct{}
	close sync.Once
}

// burst is one failure's state within the current interval.
type burst struct {
	first    slog.Record // the record written, copied for the summary
	handler  slog.Handler
	since    time.Time
	repeated int
}

// NewRateLimiter limits repeats written to next to one summary per
// interval. Close writes the summaries still pending and stops its timer.
func NewRateLimiter(next slog.Handler, interval time.Duration) *RateLimiter {
	r := &RateLimiter{next: next, interval: interval, now: time.Now,
		seen: map[string]*burst{}, quit: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

// Handler is the slog.Handler to log through.
func (r *RateLimiter) Handler() slog.Handler { return limited{r: r, next: r.next} }

func (r *RateLimiter) loop() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			r.flush(true)
			return
		case <-t.C:
			r.flush(false)
		}
	}
}

// Close writes every pending summary.
func (r *RateLimiter) Close() error {
	r.close.Do(func() { close(r.quit) })
	<-r.done
	return nil
}

// flush writes the summaries of bursts whose interval is over (all of them
// if all) and forgets bursts that had no repeats.
func (r *RateLimiter) flush(all bool) {
	now := r.now()
	var out []*burst
	r.mu.Lock()
	for k, b := range r.seen {
		if !all && now.Sub(b.since) < r.interval {
			continue
		}
		delete(r.seen, k)
		if b.repeated > 0 {
			out = append(out, b)
		}
	}
	r.mu.Unlock()
	for _, b := range out {
		_ = b.handler.Handle(context.Background(), summary(b, now))
	}
}

// summary is the first record again, restamped, with the count.
func summary(b *burst, now time.Time) slog.Record {
	s := slog.NewRecord(now, b.first.Level, b.first.Message, 0)
	b.first.Attrs(func(a slog.Attr) bool { s.AddAttrs(a); return true })
	s.AddAttrs(slog.Int("repeated", b.repeated), slog.String("within", now.Sub(b.since).Round(time.Second).String()))
	return s
}

// admit reports whether a record should be written now, counting it if
// not. A burst whose interval is over and that the timer has not flushed
// yet is returned, so its summary is written before the new first record.
func (r *RateLimiter) admit(key string, rec slog.Record, h slog.Handler) (bool, *burst) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.seen[key]
	if ok && now.Sub(old.since) < r.interval {
		old.repeated++
		return false, nil
	}
	if !ok && len(r.seen) >= maxKeys {
		return true, nil
	}
	r.seen[key] = &burst{first: rec.Clone(), handler: h, since: now}
	if ok && old.repeated > 0 {
		return true, old
	}
	return true, nil
}

// limited is the handler view of a RateLimiter, carrying WithAttrs and
// WithGroup of the logger it serves (they are part of the key).
type limited struct {
	r      *RateLimiter
	next   slog.Handler
	prefix string
}

func (l limited) Enabled(ctx context.Context, lv slog.Level) bool { return l.next.Enabled(ctx, lv) }

func (l limited) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn {
		return l.next.Handle(ctx, rec)
	}
	write, ended := l.r.admit(l.key(rec), rec, l.next)
	if ended != nil {
		_ = ended.handler.Handle(ctx, summary(ended, rec.Time))
	}
	if !write {
		return nil
	}
	return l.next.Handle(ctx, rec)
}

func (l limited) key(rec slog.Record) string {
	key := l.prefix + rec.Level.String() + "\x00" + rec.Message
	var all, dedup string
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == DedupKey {
			dedup = a.Value.String()
		}
		all += "\x00" + a.String()
		return true
	})
	if dedup != "" {
		return key + "\x00" + DedupKey + "=" + dedup
	}
	return key + all
}

func (l limited) WithAttrs(as []slog.Attr) slog.Handler {
	p := l.prefix
	for _, a := range as {
		p += a.String() + "\x00"
	}
	return limited{r: l.r, next: l.next.WithAttrs(as), prefix: p}
}

func (l limited) WithGroup(name string) slog.Handler {
	return limited{r: l.r, next: l.next.WithGroup(name), prefix: l.prefix + name + ".\x00"}
}
