package importer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"blockfs/fs/volume"
	"blockfs/objects"
)

// committer gathers nodes into batches and writes each batch to the
// volume's log with one atomic multi-write, then publishes to the store
// now and then: every publishInterval (a timer, so that an import of a few
// large files, which fills no batch for minutes, still makes each finished
// file visible within the interval), after every batch when it is
// negative, and at the end.
type committer struct {
	ctx      context.Context
	vol      *volume.Volume
	limit    int
	interval time.Duration

	mu          sync.Mutex
	batch       []objects.Entry
	flushMu     sync.Mutex // one writer at a time keeps batches in order
	lastPublish time.Time
	dirty       bool // written to the log since the last publish
	err         error

	stop chan struct{} // ends the timer goroutine
	done chan struct{}
}

func newCommitter(ctx context.Context, vol *volume.Volume, limit int, interval time.Duration) *committer {
	c := &committer{ctx: ctx, vol: vol, limit: limit, interval: interval, lastPublish: time.Now(),
		stop: make(chan struct{}), done: make(chan struct{})}
	if interval > 0 {
		go c.tick()
	} else {
		close(c.done)
	}
	return c
}

// tick writes the pending partial batch and publishes every interval.
func (c *committer) tick() {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.flush(true)
		}
	}
}

// add queues one node; a full batch is written by the goroutine that filled it.
func (c *committer) add(e objects.Entry) {
	c.mu.Lock()
	c.batch = append(c.batch, e)
	full := len(c.batch) >= c.limit
	c.mu.Unlock()
	if full {
		c.flush(false)
	}
}

// flush writes the queued nodes as one batch and publishes when it is
// time (always, for the timer, if anything was written since the last
// publish). The batch is taken under flushMu, so batches reach the log in
// the order their nodes were queued: a directory before its children,
// deletions children first.
func (c *committer) flush(timer bool) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	batch := c.batch
	c.batch = nil
	c.mu.Unlock()
	if len(batch) > 0 {
		c.writeLocked(batch)
	}
	if c.err != nil || c.ctx.Err() != nil || !c.dirty {
		return
	}
	if timer || c.interval < 0 || time.Since(c.lastPublish) >= c.interval {
		c.publishLocked(c.ctx)
	}
}

func (c *committer) writeLocked(batch []objects.Entry) {
	if c.err != nil || c.ctx.Err() != nil {
		return
	}
	if err := c.vol.Write(batch); err != nil {
		c.err = fmt.Errorf("import: writing metadata: %w", err)
		return
	}
	c.dirty = true
}

func (c *committer) publishLocked(ctx context.Context) {
	if err := c.vol.Publish(ctx); err != nil && c.err == nil {
		c.err = fmt.Errorf("import: %w", err)
	}
	c.dirty = false
	c.lastPublish = time.Now()
}

// close writes and publishes what is left: every node queued is a whole
// file (its blocks are stored), so even when the import failed or was
// interrupted (cause != nil) they are committed, and the cause is returned.
func (c *committer) close(cause error) error {
	close(c.stop)
	<-c.done
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	rest := c.batch
	c.batch = nil
	c.mu.Unlock()
	if len(rest) > 0 && c.err == nil {
		if err := c.vol.Write(rest); err != nil {
			c.err = fmt.Errorf("import: writing metadata: %w", err)
		}
	}
	if c.err == nil {
		// Not c.ctx: it is cancelled when the import failed.
		c.publishLocked(context.WithoutCancel(c.ctx))
	}
	if cause != nil {
		return cause
	}
	return c.err
}
