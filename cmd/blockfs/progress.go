package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal, where a progress bar belongs.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressBar redraws one line with done/total, the rate and an estimate,
// five times a second, until stop.
type progressBar struct {
	w     io.Writer
	get   func() (done, total int64)
	unit  func(n int64) string // how done, total and the rate read
	start time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
}

// startProgress draws a bar of bytes.
func startProgress(w io.Writer, get func() (int64, int64)) *progressBar {
	return startProgressOf(w, bytesUnit, get)
}

// startCountProgress draws a bar of things counted, e.g. "blocks".
func startCountProgress(w io.Writer, things string, get func() (int64, int64)) *progressBar {
	return startProgressOf(w, countUnit(things), get)
}

func bytesUnit(n int64) string { return humanize.IBytes(uint64(n)) }

func countUnit(things string) func(int64) string {
	return func(n int64) string { return humanize.Comma(n) + " " + things }
}

func startProgressOf(w io.Writer, unit func(int64) string, get func() (int64, int64)) *progressBar {
	p := &progressBar{w: w, get: get, unit: unit, start: time.Now(), quit: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-p.quit:
				fmt.Fprint(p.w, "\r\033[K")
				return
			}
		}
	}()
	return p
}

func (p *progressBar) draw() {
	done, total := p.get()
	fmt.Fprintf(p.w, "\r%s\033[K", p.line(done, total, time.Since(p.start)))
}

// line is the bar after elapsed with done of total.
func (p *progressBar) line(done, total int64, elapsed time.Duration) string {
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	filled := int(frac * width)
	rate := float64(done) / max(elapsed.Seconds(), 1e-9)
	eta := ""
	if rate > 0 && total > done {
		eta = " ETA " + etaOf(total-done, rate).String()
	}
	return fmt.Sprintf("[%s%s] %3.0f%% %s/%s %s/s%s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		frac*100, p.unit(done), p.unit(total), p.unit(int64(rate)), eta)
}

// etaOf is how long left takes at rate per second.
func etaOf(left int64, rate float64) time.Duration {
	return time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second)
}

// stop clears the bar; a nil bar (not a terminal) does nothing.
func (p *progressBar) stop() {
	if p == nil {
		return
	}
	close(p.quit)
	p.wg.Wait()
}
