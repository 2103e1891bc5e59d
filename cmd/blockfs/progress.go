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
	start time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
}

func startProgress(w io.Writer, get func() (int64, int64)) *progressBar {
	p := &progressBar{w: w, get: get, start: time.Now(), quit: make(chan struct{})}
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
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	filled := int(frac * width)
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-9)
	eta := ""
	if rate > 0 && total > done {
		eta = " ETA " + (time.Duration(float64(total-done)/rate) * time.Nanosecond).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %s/%s %s/s%s\033[K", strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		frac*100, humanize.IBytes(uint64(done)), humanize.IBytes(uint64(total)), humanize.IBytes(uint64(rate)), eta)
}

// stop clears the bar; a nil bar (not a terminal) does nothing.
func (p *progressBar) stop() {
	if p == nil {
		return
	}
	close(p.quit)
	p.wg.Wait()
}
