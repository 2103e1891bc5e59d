package fs

import (
	"context"
	"fmt"
	"sync"

	"blockfs/objects"
)

// committer gathers nodes into batches and writes each batch to the log with
// one atomic multi-write, so a batch of small files costs one log append and
// (with group commit) one fsync.
type committer struct {
	ctx   context.Context
	log   *objects.Log
	limit int

	mu      sync.Mutex
	batch   []objects.Entry
	flushMu sync.Mutex // one writer at a time keeps batches in order
	err     error
}

func newCommitter(ctx context.Context, log *objects.Log, limit int) *committer {
	return &committer{ctx: ctx, log: log, limit: limit}
}

// add queues one node; a full batch is written by the goroutine that filled it.
func (c *committer) add(e objects.Entry) {
	c.mu.Lock()
	c.batch = append(c.batch, e)
	var full []objects.Entry
	if len(c.batch) >= c.limit {
		full, c.batch = c.batch, nil
	}
	c.mu.Unlock()
	if full != nil {
		c.write(full)
	}
}

func (c *committer) write(batch []objects.Entry) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if c.err != nil || c.ctx.Err() != nil {
		return
	}
	if err := c.log.MultiWrite(batch); err != nil {
		c.err = fmt.Errorf("import: writing metadata: %w", err)
	}
}

// close writes what is left, unless the import failed (cause != nil): then
// only whole files already committed stay, which is what a crash would leave.
func (c *committer) close(cause error) error {
	if cause == nil {
		c.mu.Lock()
		rest := c.batch
		c.batch = nil
		c.mu.Unlock()
		if len(rest) > 0 {
			c.write(rest)
		}
	}
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if cause != nil {
		return cause
	}
	if c.err != nil {
		return c.err
	}
	if err := c.log.Sync(); err != nil {
		return fmt.Errorf("import: syncing metadata: %w", err)
	}
	return nil
}
