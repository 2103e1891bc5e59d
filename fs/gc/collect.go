package gc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/volume"
)

// Options say what a collection retains and how careful it is.
type Options struct {
	KeepLast   int           // the newest N snapshots (the current one is always kept)
	KeepWithin time.Duration // snapshots newer than this
	// Grace is how long a condemned block stays before a later run may
	// delete it, and how old a temp file of an interrupted write must be.
	Grace  time.Duration
	DryRun bool
	Skew   time.Duration // default DefaultSkew
	// SweepTTL bounds a sweep's lease; it is renewed as deletes proceed.
	SweepTTL time.Duration // default 5 minutes
	MetaDir  string        // for the temporary logs of the mark
	Workers  int           // parallel deletes where the store has no batch delete (default 16)
	// Progress, if set, is called as blocks are listed and deleted.
	Progress func(phase string, done, total int64)

	onePhase bool // tests only: the naive collector (mark, then delete at once)
}

// Count is a number of blocks and their bytes.
type Count struct {
	Blocks int64 `json:"blocks"`
	Bytes  int64 `json:"bytes"`
}

func (c *Count) add(size int64) { c.Blocks++; c.Bytes += size }

// Report is what a run found and did.
type Report struct {
	DryRun   bool     `json:"dry_run"`
	Phase    string   `json:"phase"`    // the collector's phase when the run began
	Retained []uint64 `json:"retained"` // the snapshots kept, newest first
	Stored   Count    `json:"stored"`   // blocks listed in the store
	Live     Count    `json:"live"`     // of those, reachable
	// Unreachable is what the store holds that no retained snapshot
	// reaches (condemned now, deleted by a run after the grace period).
	Unreachable Count `json:"unreachable"`
	Condemned   Count `json:"condemned"` // newly condemned by this run
	Freed       Count `json:"freed"`     // deleted by this run (dry: would be)
	Kept        Count `json:"kept"`      // what the store holds after the run
	Temps       Count `json:"temps"`     // temp files of interrupted writes removed
	// SweepAfter is when the blocks condemned can be deleted; Deferred says
	// why a sweep due did not run (leases that may still use them).
	SweepAfter time.Time `json:"sweep_after,omitzero"`
	Deferred   string    `json:"deferred,omitempty"`
}

// Collector runs collections on one store's catalog.
type Collector struct {
	cat  *volume.Catalog
	refs refs
	opts Options
}

// New returns a collector for cat.
func New(cat *volume.Catalog, opts Options) *Collector {
	if opts.Skew <= 0 {
		opts.Skew = DefaultSkew
	}
	if opts.SweepTTL <= 0 {
		opts.SweepTTL = 5 * time.Minute
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.KeepLast < 1 {
		opts.KeepLast = 1
	}
	return &Collector{cat: cat, refs: refs{cat.Refs()}, opts: opts}
}

// Run is one collection: a sweep of what an earlier run condemned, if its
// grace period is over and no lease holds it off, then a condemnation of
// what is unreachable now (when no condemnation is pending).
func (c *Collector) Run(ctx context.Context) (*Report, error) {
	st, _, err := c.refs.load(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{DryRun: c.opts.DryRun, Phase: st.Phase, Retained: []uint64{}}
	if c.opts.onePhase {
		return rep, c.naive(ctx, rep)
	}
	if st.Phase != PhaseIdle {
		swept, err := c.sweep(ctx, st, rep)
		if err != nil || !swept {
			if err == nil {
				err = c.account(ctx, rep, nil)
			}
			return rep, err
		}
	}
	return rep, c.condemn(ctx, rep)
}

// live marks every block the retained snapshots reach, and the blocks of
// the collector's own state: the current snapshot, the newest KeepLast,
// those newer than KeepWithin, every tagged one, and those the live
// leases name (a mount's snapshot and every later one).
func (c *Collector) live(ctx context.Context, st State, rep *Report) (map[blockstore.Hash]struct{}, error) {
	snaps, err := c.cat.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("gc: %w", volume.ErrNoMetadata)
	}
	tags, err := c.cat.Tags(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	oldest := uint64(1<<64 - 1) // leases: keep this generation and later
	var extra [][]blockstore.Locator
	for _, l := range st.Leases {
		if l.live(now, c.opts.Skew) && l.Kind == KindMount {
			oldest = min(oldest, l.Generation)
			if len(l.Manifest) > 0 {
				extra = append(extra, l.Manifest)
			}
		}
	}
	var keep [][]blockstore.Locator
	for i, s := range snaps {
		if i < c.opts.KeepLast || (c.opts.KeepWithin > 0 && now.Sub(s.Time) < c.opts.KeepWithin) ||
			len(s.Tags) > 0 || s.Generation >= oldest {
			keep = append(keep, s.Manifest)
			rep.Retained = append(rep.Retained, s.Generation)
		}
	}
	for _, t := range tags {
		keep = append(keep, t.Manifest) // a tag reaches its snapshot even if the history lost it
	}
	keep = append(keep, extra...)
	seen := map[string]bool{}
	live := map[blockstore.Hash]struct{}{}
	add := func(l blockstore.Locator) { live[l.Hash] = struct{}{} }
	for _, m := range keep {
		key := fmt.Sprint(m)
		if seen[key] {
			continue
		}
		seen[key] = true
		if err := c.cat.Reach(ctx, m, c.opts.MetaDir, add); err != nil {
			return nil, fmt.Errorf("gc: marking from manifest %v: %w", m[0], err)
		}
	}
	if st.Condemned != nil {
		for _, l := range st.Condemned.Blocks {
			add(l)
		}
	}
	return live, nil
}

// unreachable marks from the state in the gc ref and lists the store: the
// blocks no retained snapshot reaches (the live ones are counted in rep).
func (c *Collector) unreachable(ctx context.Context, rep *Report) (State, []blockstore.Locator, error) {
	st, _, err := c.refs.load(ctx)
	if err != nil {
		return State{}, nil, err
	}
	live, err := c.live(ctx, st, rep)
	if err != nil {
		return State{}, nil, err
	}
	var dead []blockstore.Locator
	err = c.list(ctx, rep, func(l blockstore.Locator) {
		if _, ok := live[l.Hash]; ok {
			rep.Live.add(l.Size)
		} else {
			dead = append(dead, l)
		}
	})
	return st, dead, err
}

// condemn lists the store and records what is unreachable as condemned,
// if the collector is idle.
func (c *Collector) condemn(ctx context.Context, rep *Report) error {
	st, dead, err := c.unreachable(ctx, rep)
	if err != nil {
		return err
	}
	for _, l := range dead {
		rep.Unreachable.add(l.Size)
	}
	rep.Kept = rep.Stored
	if err := c.temps(ctx, rep); err != nil {
		return err
	}
	if len(dead) == 0 || c.opts.DryRun || st.Phase != PhaseIdle {
		return nil
	}
	set := make(hashSet, len(dead))
	for i, l := range dead {
		set[i] = l.Hash
	}
	slices.SortFunc(set, cmpHash)
	locs, err := writeSet(ctx, c.cat.Blocks(), set)
	if err != nil {
		return err
	}
	cond := &Condemned{Time: time.Now().UTC(), Host: hostname, Count: int64(len(set)), Blocks: locs, Bytes: rep.Unreachable.Bytes}
	_, err = c.refs.update(ctx, c.opts.Skew, func(s *State) error {
		if s.Phase != PhaseIdle {
			return errNoChange // another collector condemned first
		}
		s.Epoch++
		s.Phase, s.Condemned, s.Sweep = PhaseCondemned, cond, nil
		return nil
	})
	if err != nil {
		return err
	}
	rep.Condemned = rep.Unreachable
	rep.SweepAfter = cond.Time.Add(c.opts.Grace)
	return nil
}

// list lists the store, counting into rep.Stored.
func (c *Collector) list(ctx context.Context, rep *Report, fn func(blockstore.Locator)) error {
	return c.cat.Backend().List(ctx, func(l blockstore.Locator) error {
		rep.Stored.add(l.Size)
		if c.opts.Progress != nil && rep.Stored.Blocks%4096 == 0 {
			c.opts.Progress("listing", rep.Stored.Blocks, 0)
		}
		fn(l)
		return nil
	})
}

// account fills in the store's figures for a run that only reports.
func (c *Collector) account(ctx context.Context, rep *Report, _ map[blockstore.Hash]struct{}) error {
	st, _, err := c.refs.load(ctx)
	if err != nil {
		return err
	}
	live, err := c.live(ctx, st, rep)
	if err != nil {
		return err
	}
	rep.Retained = dedupGens(rep.Retained)
	err = c.list(ctx, rep, func(l blockstore.Locator) {
		if _, ok := live[l.Hash]; ok {
			rep.Live.add(l.Size)
		} else {
			rep.Unreachable.add(l.Size)
		}
	})
	rep.Kept = rep.Stored
	if rep.DryRun {
		rep.Kept.Blocks -= rep.Freed.Blocks
		rep.Kept.Bytes -= rep.Freed.Bytes
	}
	if err == nil {
		err = c.temps(ctx, rep)
	}
	return err
}

func dedupGens(g []uint64) []uint64 {
	sort.Slice(g, func(i, j int) bool { return g[i] > g[j] })
	return slices.Compact(g)
}

// sweep deletes the blocks condemned in st that are still unreachable, if
// the grace period is over and no live lease may use them: none registered
// before the condemnation, none reusing condemned blocks. It reports
// whether the collector is idle afterwards.
func (c *Collector) sweep(ctx context.Context, st State, rep *Report) (bool, error) {
	due := st.Condemned.Time.Add(c.opts.Grace)
	rep.SweepAfter = due
	now := time.Now()
	if now.Before(due) {
		rep.Deferred = fmt.Sprintf("grace period: the %d condemned blocks may be deleted after %s", st.Condemned.Count, due.Format(time.RFC3339))
		return false, nil
	}
	if why := blockers(st, now, c.opts.Skew); why != "" {
		rep.Deferred = why
		return false, nil
	}
	if st.Phase == PhaseSweeping && st.Sweep.live(now, c.opts.Skew) {
		rep.Deferred = fmt.Sprintf("another collector (%s) is sweeping until %s", st.Sweep.Host, st.Sweep.Expires.Format(time.RFC3339))
		return false, nil
	}
	if c.opts.DryRun {
		return false, c.dryFreed(ctx, st, rep)
	}
	sw := &Sweep{ID: newID(), Host: hostname}
	epoch := st.Epoch
	var blocked string
	st, err := c.refs.update(ctx, c.opts.Skew, func(s *State) error {
		now := time.Now()
		blocked = ""
		switch {
		case s.Epoch != epoch || s.Phase == PhaseIdle:
			blocked = "another collector swept first"
		case s.Phase == PhaseSweeping && s.Sweep.live(now, c.opts.Skew):
			blocked = "another collector is sweeping"
		default:
			blocked = blockers(*s, now, c.opts.Skew)
		}
		if blocked != "" {
			return errNoChange
		}
		sw.Expires = now.Add(c.opts.SweepTTL)
		s.Phase, s.Sweep = PhaseSweeping, sw
		return nil
	})
	if err != nil || blocked != "" {
		rep.Deferred = blocked
		return false, err
	}
	// Marked only now, after the swap: every publish that a lease allowed
	// to reuse a condemned block has landed in the head read here.
	dead, err := c.doomed(ctx, st, rep)
	if err != nil {
		return false, err
	}
	if err := c.delete(ctx, sw, epoch, dead, rep); err != nil {
		return false, err
	}
	_, err = c.refs.update(ctx, c.opts.Skew, func(s *State) error {
		if s.Epoch != epoch || s.Phase != PhaseSweeping || s.Sweep.ID != sw.ID {
			return errors.New("gc: the sweep was taken over while deleting")
		}
		s.Phase, s.Sweep, s.Condemned = PhaseIdle, nil, nil
		return nil
	})
	rep.Retained = rep.Retained[:0]
	return err == nil, err
}

// blockers says which live leases hold off a sweep of st's epoch ("" if none).
func blockers(st State, now time.Time, skew time.Duration) string {
	var before, reusing int
	for _, l := range st.Leases {
		if !l.live(now, skew) || l.Kind == KindMount {
			// A mount writes nothing, so it cannot have skipped an upload
			// of a condemned block: what it needs is the generation its
			// lease names, which the sweep marks again when it starts
			// (doomed), not a sweep held off for the mount's whole life.
			continue
		}
		if l.Epoch < st.Epoch {
			before++
		} else if l.Reusing {
			reusing++
		}
	}
	if before+reusing == 0 {
		return ""
	}
	return fmt.Sprintf("sweep held off by %d leases older than the condemnation and %d reusing condemned blocks", before, reusing)
}

// doomed is the condemned set of st minus what the retained snapshots reach now.
func (c *Collector) doomed(ctx context.Context, st State, rep *Report) ([]blockstore.Hash, error) {
	set, err := readSet(ctx, c.cat.Blocks(), st.Condemned.Blocks, st.Condemned.Count)
	if err != nil {
		return nil, err
	}
	live, err := c.live(ctx, st, rep)
	if err != nil {
		return nil, err
	}
	var dead []blockstore.Hash
	for _, h := range set {
		if _, ok := live[h]; !ok {
			dead = append(dead, h)
		}
	}
	return dead, nil
}

// dryFreed reports what a sweep would delete.
func (c *Collector) dryFreed(ctx context.Context, st State, rep *Report) error {
	dead, err := c.doomed(ctx, st, rep)
	if err != nil {
		return err
	}
	rep.Retained = rep.Retained[:0]
	want := make(map[blockstore.Hash]bool, len(dead))
	for _, h := range dead {
		want[h] = true
	}
	return c.cat.Backend().List(ctx, func(l blockstore.Locator) error {
		if want[l.Hash] {
			rep.Freed.add(l.Size)
		}
		return nil
	})
}

// sizes maps the store's blocks to their sizes, for the accounting of deletes.
func (c *Collector) sizes(ctx context.Context, want map[blockstore.Hash]bool) (map[blockstore.Hash]int64, error) {
	out := make(map[blockstore.Hash]int64, len(want))
	err := c.cat.Backend().List(ctx, func(l blockstore.Locator) error {
		if want[l.Hash] {
			out[l.Hash] = l.Size
		}
		return nil
	})
	return out, err
}

// delete removes dead in batches, renewing the sweep's lease between
// batches and stopping if it cannot: a sweeper never deletes after the
// expiry it last wrote (on its own clock).
func (c *Collector) delete(ctx context.Context, sw *Sweep, epoch uint64, dead []blockstore.Hash, rep *Report) error {
	want := make(map[blockstore.Hash]bool, len(dead))
	for _, h := range dead {
		want[h] = true
	}
	sizes, err := c.sizes(ctx, want)
	if err != nil {
		return err
	}
	const batch = 1000
	for i := 0; i < len(dead); i += batch {
		if time.Until(sw.Expires) < c.opts.SweepTTL/2 {
			if err := c.renewSweep(ctx, sw, epoch); err != nil {
				return err
			}
		}
		part := dead[i:min(i+batch, len(dead))]
		dctx, cancel := context.WithDeadline(ctx, sw.Expires)
		err := deleteBlocks(dctx, c.cat.Backend(), part, c.opts.Workers)
		cancel()
		if err != nil {
			return fmt.Errorf("gc: deleting: %w", err)
		}
		for _, h := range part {
			if sz, ok := sizes[h]; ok {
				rep.Freed.add(sz)
			}
		}
		if c.opts.Progress != nil {
			c.opts.Progress("deleting", int64(i+len(part)), int64(len(dead)))
		}
	}
	return nil
}

func (c *Collector) renewSweep(ctx context.Context, sw *Sweep, epoch uint64) error {
	_, err := c.refs.update(ctx, c.opts.Skew, func(s *State) error {
		now := time.Now()
		if s.Epoch != epoch || s.Phase != PhaseSweeping || s.Sweep.ID != sw.ID || !now.Before(sw.Expires) {
			return errors.New("gc: lost the sweep's lease (taken over or expired): stopping")
		}
		sw.Expires = now.Add(c.opts.SweepTTL)
		s.Sweep.Expires = sw.Expires
		return nil
	})
	return err
}

// BatchDeleter is the store capability deleteBlocks uses when present.
type BatchDeleter = blockstore.BatchDeleter

// deleteBlocks deletes hs, in one batch request where the store has one,
// else with bounded parallel deletes. A block already gone (a rerun after
// a crash) is not an error.
func deleteBlocks(ctx context.Context, st blockstore.Store, hs []blockstore.Hash, workers int) error {
	if bd, ok := blockstore.As[BatchDeleter](st); ok {
		return bd.DeleteBatch(ctx, hs)
	}
	var mu sync.Mutex
	var first error
	work := make(chan blockstore.Hash)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				if err := st.Delete(ctx, h); err != nil && !errors.Is(err, blockstore.ErrNotFound) {
					mu.Lock()
					first = cmp(first, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, h := range hs {
		work <- h
	}
	close(work)
	wg.Wait()
	return first
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// temps removes (or, dry, counts) temp files of interrupted writes older
// than the grace period, on stores that keep any.
func (c *Collector) temps(ctx context.Context, rep *Report) error {
	tc, ok := blockstore.As[blockstore.TempCleaner](c.cat.Backend())
	if !ok {
		return nil
	}
	n, b, err := tc.CleanTemps(ctx, c.opts.Grace, c.opts.DryRun)
	rep.Temps = Count{Blocks: n, Bytes: b}
	return err
}

// naive is the one-phase mark and sweep that the protocol exists to
// avoid: tests show it loses a block an import reused.
func (c *Collector) naive(ctx context.Context, rep *Report) error {
	_, unreachable, err := c.unreachable(ctx, rep)
	if err != nil {
		return err
	}
	dead := make([]blockstore.Hash, len(unreachable))
	for i, l := range unreachable {
		dead[i] = l.Hash
		rep.Freed.add(l.Size)
	}
	return deleteBlocks(ctx, c.cat.Backend(), dead, c.opts.Workers)
}
