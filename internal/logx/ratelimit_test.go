package logx

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is advanced by the test; the limiter reads it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// lockedBuffer is safe for the handler and the limiter's timer at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, ln := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}

func newLimited(t *testing.T) (*slog.Logger, *RateLimiter, *fakeClock, *lockedBuffer) {
	buf := &lockedBuffer{}
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	// An hour: the timer never fires during the test; the clock decides.
	r := NewRateLimiter(slog.NewJSONHandler(buf, nil), time.Hour)
	r.now = clock.now
	t.Cleanup(func() { r.Close() })
	return slog.New(r.Handler()), r, clock, buf
}

func TestRepeatsOfOneBlockAreOneLineAndACount(t *testing.T) {
	log, r, _, buf := newLimited(t)
	for i := range 1000 {
		log.Error("read failed", "path", "/f", "off", i*4096, DedupKey, "abc", "err", "hash mismatch")
	}
	log.Error("read failed", "path", "/g", "off", 0, DedupKey, "other", "err", "hash mismatch")
	if got := buf.lines(); len(got) != 2 || got[0]["block"] != "abc" || got[1]["block"] != "other" {
		t.Fatalf("before flush: %v", got)
	}
	r.Close()
	got := buf.lines()
	if len(got) != 3 || got[2]["block"] != "abc" || got[2]["repeated"] != float64(999) {
		t.Fatalf("after close: want a summary of 999 repeats of abc, got %v", got)
	}
}

func TestIntervalEndsABurst(t *testing.T) {
	log, r, clock, buf := newLimited(t)
	log.Warn("refresh failed", "err", "timeout")
	log.Warn("refresh failed", "err", "timeout")
	log.Warn("refresh failed", "err", "refused") // a different failure: its own line
	clock.add(2 * time.Hour)
	log.Warn("refresh failed", "err", "timeout") // summary of the last burst, then a new first line
	got := buf.lines()
	if len(got) != 4 || got[1]["err"] != "refused" || got[2]["repeated"] != float64(1) || got[3]["repeated"] != nil {
		t.Fatalf("%v", got)
	}
	r.Close()
	if got := buf.lines(); len(got) != 4 {
		t.Fatalf("close wrote a summary with nothing repeated: %v", got)
	}
}

func TestInfoIsNeverLimited(t *testing.T) {
	log, _, _, buf := newLimited(t)
	for range 5 {
		log.Info("serving")
	}
	if got := buf.lines(); len(got) != 5 {
		t.Fatalf("%d lines", len(got))
	}
}

func TestOpenJournalDropsTime(t *testing.T) {
	var b bytes.Buffer
	h, _, err := Open(Config{Level: "warn", NoTime: true}, &b)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h)
	log.Info("hidden")
	log.Warn("shown")
	if s := b.String(); strings.Contains(s, "time=") || strings.Contains(s, "hidden") || !strings.Contains(s, "level=WARN msg=shown") {
		t.Fatalf("%q", s)
	}
	if _, _, err := Open(Config{Level: "loud"}, &b); err == nil {
		t.Fatal("bad level accepted")
	}
	if _, _, err := Open(Config{Format: "xml"}, &b); err == nil {
		t.Fatal("bad format accepted")
	}
}
