package mount

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/tree"
)

// Learned start-up traces. A job's start-up opens the same files in the
// same order on every node, and which ones only a run shows. A mount given
// a trigger (Options.TraceTrigger: the interpreter, the job script) looks
// for a trace of that trigger's content in the store's ref
// traces/<hex content hash>. If there is one, opening the trigger replays
// it: its blocks are prefetched in the recorded order, a bounded number at
// a time, through the pool (which never takes memory a waiting read
// needs). If there is none, opening the trigger starts a recording of the
// order in which reads first need blocks, for Options.TraceWindow or
// maxTraceBlocks blocks, which is then published into that ref (only if
// no other node published first), for every other node to replay.
//
// A trace is a ref, not a block: nothing in the catalog references it, so
// garbage collection neither keeps it nor the blocks it names; a trace
// naming blocks since collected prefetches nothing for them (the fetch
// fails quietly, and the demand read reports what is really missing).

// DefaultTraceWindow is how long a recording runs after the trigger opens.
const DefaultTraceWindow = 10 * time.Second

// maxTraceBlocks bounds a trace (a line is at most 85 bytes: within
// blockstore.MaxRefSize).
const maxTraceBlocks = 8192

// traceRef is the ref holding the trace of a trigger with content hash key.
func traceRef(n *tree.Node) string {
	return "traces/" + strings.TrimPrefix(ContentHash(n), "sha256:")
}

// EncodeTrace is the ref's value: one locator per line, in order of need.
func EncodeTrace(locs []blockstore.Locator) []byte {
	var b []byte
	for _, l := range locs {
		b = append(b, l.String()...)
		b = append(b, '\n')
	}
	return b
}

// ErrBadTrace is wrapped by DecodeTrace's errors.
var ErrBadTrace = errors.New("malformed trace")

// DecodeTrace parses a trace strictly: every line a canonical locator, at
// most maxTraceBlocks of them, each ending in a newline. Anyone who can
// write refs can write a trace, so a bad one is refused whole, never half
// used; it can only ever cause prefetches, which verify like every read.
func DecodeTrace(b []byte) ([]blockstore.Locator, error) {
	if len(b) > blockstore.MaxRefSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadTrace, len(b))
	}
	var locs []blockstore.Locator
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, fmt.Errorf("%w: unterminated last line", ErrBadTrace)
		}
		l, err := blockstore.ParseLocator(string(b[:i]))
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadTrace, len(locs)+1, err)
		}
		if len(locs) == maxTraceBlocks {
			return nil, fmt.Errorf("%w: more than %d blocks", ErrBadTrace, maxTraceBlocks)
		}
		locs = append(locs, l)
		b = b[i+1:]
	}
	return locs, nil
}

// tracer is a mount's trace of its trigger: nothing, a recording under
// way, or done (replayed, published, or given up).
type tracer struct {
	mu        sync.Mutex
	started   bool // the trigger was opened: replaying or recording began
	recording bool
	seen      map[blockstore.Locator]bool
	order     []blockstore.Locator
	ref       string
	stop      *time.Timer
	published chan struct{} // closed once a recording is published or dropped
}

// traceOpen is told of every open: the first open of the trigger replays
// its trace or starts recording one.
func (m *Mount) traceOpen(p string, n *tree.Node) {
	if m.opts.TraceTrigger == "" || p != tree.CleanPath(m.opts.TraceTrigger) {
		return
	}
	t := &m.trace
	t.mu.Lock()
	if t.started {
		t.mu.Unlock()
		return
	}
	t.started, t.ref, t.published = true, traceRef(n), make(chan struct{})
	t.mu.Unlock()
	refs, ok := blockstore.As[blockstore.RefStore](m.vol.Blocks)
	if !ok {
		close(t.published)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(m.opts.FetchTimeout, time.Second))
	data, _, err := refs.GetRef(ctx, t.ref)
	cancel()
	switch {
	case err == nil:
		close(t.published)
		m.replay(t.ref, data)
	case errors.Is(err, blockstore.ErrNotFound):
		t.mu.Lock()
		t.recording, t.seen = true, map[blockstore.Locator]bool{}
		t.stop = time.AfterFunc(m.opts.TraceWindow, func() { m.publishTrace() })
		t.mu.Unlock()
	default:
		close(t.published)
		m.opts.Logger.Warn("trace: cannot read", "ref", t.ref, "err", err)
	}
}

// replay prefetches a trace's blocks in order.
func (m *Mount) replay(ref string, data []byte) {
	locs, err := DecodeTrace(data)
	if err != nil {
		m.opts.Logger.Warn("trace: not replayed", "ref", ref, "err", err)
		return
	}
	f := &siblingFetch{m: m, locs: locs}
	f.done = f.finished
	f.fill()
}

// traceRead notes the blocks a read of [off, end) of n needs, in order,
// while a recording runs.
func (m *Mount) traceRead(n *tree.Node, off, end int64) {
	t := &m.trace
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.recording {
		return
	}
	first, _, ok := n.Block(off)
	if !ok {
		return
	}
	for i := first; i < len(n.Blocks) && n.Start(i) < end; i++ {
		l := n.Blocks[i]
		if tree.IsHole(l) || t.seen[l] {
			continue
		}
		t.seen[l] = true
		t.order = append(t.order, l)
		if len(t.order) == maxTraceBlocks {
			go m.publishTrace()
			return
		}
	}
}

// publishTrace ends the recording and stores it, unless another node has
// published a trace of the trigger meanwhile. It is called by the
// window's timer, on a full trace, and by Unmount (through FinishTrace).
func (m *Mount) publishTrace() {
	t := &m.trace
	t.mu.Lock()
	if !t.recording {
		t.mu.Unlock()
		return
	}
	t.recording = false
	t.stop.Stop()
	order, ref := t.order, t.ref
	t.order, t.seen = nil, nil
	t.mu.Unlock()
	defer close(t.published)
	refs, ok := blockstore.As[blockstore.RefStore](m.vol.Blocks)
	if !ok || len(order) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(m.opts.FetchTimeout, time.Second))
	defer cancel()
	if _, err := refs.PutRef(ctx, ref, EncodeTrace(order), ""); err != nil && !errors.Is(err, blockstore.ErrConflict) {
		m.opts.Logger.Warn("trace: not published", "ref", ref, "err", err)
	}
}

// FinishTrace ends a recording now (publishing what it has) and waits
// until it is published; it returns at once when none runs.
func (m *Mount) FinishTrace() {
	m.publishTrace()
	t := &m.trace
	t.mu.Lock()
	ch := t.published
	t.mu.Unlock()
	if ch != nil {
		<-ch
	}
}
