package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
)

// Catalog is a store's catalog opened without ingesting its metadata: what
// log, tag, rollback and repair work on, and the way in when the metadata
// is too damaged for Open.
type Catalog struct {
	Spec  string
	store *storeurl.Stack
	cat   catalog
}

// OpenCatalog opens the store named by spec for its catalog only.
func OpenCatalog(ctx context.Context, spec string, opts storeurl.Options) (*Catalog, error) {
	store, err := storeurl.Open(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	refs, ok := blockstore.As[blockstore.RefStore](store.Blocks)
	if !ok {
		store.Close()
		return nil, fmt.Errorf("store %s: %w", spec, ErrNoRefs)
	}
	return &Catalog{Spec: spec, store: store, cat: catalog{blocks: store.Blocks, refs: refs, flush: flusherOf(store.Blocks)}}, nil
}

// Close closes the store.
func (c *Catalog) Close() error { return c.store.Close() }

// ErrNoMetadata is returned where a store must hold published metadata
// and holds none (no meta/head).
var ErrNoMetadata = errors.New("no metadata published in this store (no meta/head ref)")

// Snapshots lists the store's snapshots, newest first, with their tags.
// A head whose segment list does not check is listed too: the operator
// needs the list to choose what to roll back to.
func (c *Catalog) Snapshots(ctx context.Context) ([]Snapshot, error) {
	h, err := c.cat.loadLenient(ctx)
	if err != nil {
		return nil, err
	}
	tags, _, err := c.cat.loadTags(ctx)
	if err != nil {
		return nil, err
	}
	byGen := map[uint64][]string{}
	for _, t := range tags {
		byGen[t.Generation] = append(byGen[t.Generation], t.Name)
	}
	out := h.snapshots()
	for i := range out {
		out[i].Tags = byGen[out[i].Generation]
		sort.Strings(out[i].Tags)
	}
	return out, nil
}

// Current is the manifest meta/head names now (ErrNoMetadata if none):
// for tools and tests that must know what a mount of the store reads.
func (c *Catalog) Current(ctx context.Context) (Manifest, error) {
	h, err := c.cat.load(ctx)
	if err != nil {
		return Manifest{}, err
	}
	if h.version == "" {
		return Manifest{}, ErrNoMetadata
	}
	return h.m, nil
}

// UnreadBlocks are the blocks of the store at spec that a mount of it
// never reads (UnreadSegmentBlocks of its current manifest): what a count
// of a mount's store reads leaves out.
func UnreadBlocks(ctx context.Context, spec string, opts storeurl.Options) (map[blockstore.Hash]bool, error) {
	cat, err := OpenCatalog(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	defer cat.Close()
	m, err := cat.Current(ctx)
	if err != nil {
		return nil, err
	}
	return UnreadSegmentBlocks(m), nil
}

// UnreadSegmentBlocks are the blocks of m's metadata segments when m has
// parts: a mount serves from the parts and never reads them.
func UnreadSegmentBlocks(m Manifest) map[blockstore.Hash]bool {
	if m.Parts == nil {
		return nil // mounts ingest the segments
	}
	out := map[blockstore.Hash]bool{}
	for _, s := range m.Segments {
		for _, l := range s.Blocks {
			out[l.Hash] = true
		}
	}
	return out
}

// Tags lists the tags by name.
func (c *Catalog) Tags(ctx context.Context) ([]Tag, error) {
	tags, _, err := c.cat.loadTags(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Tag, 0, len(tags))
	for _, t := range tags {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Tag names the snapshot spec ("" is the current one) name. An existing
// tag is not moved: delete it first.
func (c *Catalog) Tag(ctx context.Context, name, spec string) (Tag, error) {
	if err := CheckTagName(name); err != nil {
		return Tag{}, err
	}
	h, err := c.cat.load(ctx)
	if err != nil {
		return Tag{}, err
	}
	if h.version == "" {
		return Tag{}, ErrNoMetadata
	}
	s := h.current()
	if spec != "" {
		if s, err = c.cat.resolve(ctx, h, spec); err != nil {
			return Tag{}, err
		}
	}
	t := Tag{Name: name, Generation: s.Generation, Manifest: s.Manifest}
	err = c.cat.updateTags(ctx, func(tags map[string]Tag) error {
		if old, ok := tags[name]; ok {
			return fmt.Errorf("tag %s already names snapshot %d (delete it first)", name, old.Generation)
		}
		tags[name] = t
		return nil
	})
	return t, err
}

// DeleteTag removes tag name; its snapshot stays in the history.
func (c *Catalog) DeleteTag(ctx context.Context, name string) error {
	if err := CheckTagName(name); err != nil {
		return err
	}
	return c.cat.updateTags(ctx, func(tags map[string]Tag) error {
		if _, ok := tags[name]; !ok {
			return fmt.Errorf("tag %q: %w", name, ErrNoSnapshot)
		}
		delete(tags, name)
		return nil
	})
}

// Change is what a rollback or repair does (or, dry, would do).
type Change struct {
	DryRun    bool      `json:"dry_run"`
	From      Snapshot  `json:"from"`      // the current snapshot
	To        Snapshot  `json:"to"`        // the snapshot restored
	Published *Snapshot `json:"published"` // the new snapshot (nil when dry)
	// Undone lists the snapshots after To whose changes are no longer in
	// the tree; Dropped and Restored the segments leaving and re-entering it.
	Undone   []uint64  `json:"undone"`
	Dropped  []string  `json:"dropped_segments"`
	Restored []string  `json:"restored_segments"`
	Damaged  []Problem `json:"damaged,omitempty"` // repair: the metadata blocks found bad
	// Parts is, for a repair that found every segment whole, what it found
	// of the snapshot's metadata parts and did (Volume.RepairParts).
	Parts *PartsRepair `json:"parts,omitempty"`
	// Changes is what the restore does to the tree (nil: the current
	// tree could not be read to count it).
	Changes *Changes `json:"changes"`
}

// Rollback publishes a new snapshot whose metadata is that of snapshot spec
// (a generation or a tag). History is not rewritten: the snapshots in
// between stay listed and can be rolled back to in turn.
func (c *Catalog) Rollback(ctx context.Context, spec string, dryRun bool) (*Change, error) {
	h, err := c.cat.loadLenient(ctx)
	if err != nil {
		return nil, err
	}
	if h.version == "" {
		return nil, ErrNoMetadata
	}
	to, err := c.cat.resolve(ctx, h, spec)
	if err != nil {
		return nil, err
	}
	return c.restore(ctx, h, to, OpRollback, dryRun)
}

// restore publishes (unless dry) a snapshot equal to to, after checking
// that every block of its metadata is present.
func (c *Catalog) restore(ctx context.Context, h head, to Snapshot, op string, dryRun bool) (*Change, error) {
	from := h.current()
	if to.Generation == from.Generation {
		return nil, fmt.Errorf("snapshot %d is the current one: nothing to restore", to.Generation)
	}
	tm, err := c.cat.readManifest(ctx, to.Manifest)
	if err != nil {
		return nil, fmt.Errorf("snapshot %d: %w", to.Generation, err)
	}
	if bad := c.cat.damaged(ctx, tm.Segments, false, nil); len(bad) > 0 {
		return nil, fmt.Errorf("snapshot %d is damaged too (%s: %s); try blockfs repair", to.Generation, bad[0].Paths[0], bad[0].Error)
	}
	ch := &Change{DryRun: dryRun, From: from, To: to, Undone: []uint64{}, Dropped: []string{}, Restored: []string{}}
	for _, s := range h.snapshots() {
		if s.Generation > to.Generation {
			ch.Undone = append(ch.Undone, s.Generation)
		}
	}
	ch.Dropped, ch.Restored = segmentDiff(h.m.Segments, tm.Segments)
	if h.damage == nil {
		// Best effort: a current tree too damaged to read (repair) is
		// restored all the same, its counts unknown.
		if ch.Changes, err = c.cat.restoreChanges(ctx, h.m, tm); err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if dryRun {
		return ch, nil
	}
	m, _, err := c.cat.update(ctx, Snapshot{Op: op, Target: to.Generation, Changes: ch.Changes}, func(m *Manifest) error {
		m.Segments = restoredSegments(h.m.Segments, tm.Segments, m.Segments)
		m.MaxVersion = max(m.MaxVersion, tm.MaxVersion)
		if sameSegments(m.Segments, tm.Segments) {
			// The restored tree is exactly to's: so are its parts.
			m.Parts = tm.Parts
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ch.Published = m.Snapshot
	return ch, nil
}

// restoredSegments is the segment list of a restore to the snapshot whose
// segments are to, decided on the head whose segments were from, applied to
// the head now current: to's segments, plus any a publish added since from
// (an import that won the race against the restore is not dropped).
func restoredSegments(from, to, current []SegmentRef) []SegmentRef {
	skip := make(map[string]bool, len(from)+len(to))
	for _, s := range from {
		skip[s.ID] = true
	}
	for _, s := range to {
		skip[s.ID] = true
	}
	out := slices.Clone(to)
	for _, s := range current {
		if !skip[s.ID] {
			out = append(out, s)
		}
	}
	return out
}

// sameSegments reports whether a and b list the same segments.
func sameSegments(a, b []SegmentRef) bool {
	dropped, restored := segmentDiff(a, b)
	return len(dropped) == 0 && len(restored) == 0
}

// segmentDiff returns the ids of the segments of cur not in to, and of to
// not in cur.
func segmentDiff(cur, to []SegmentRef) (dropped, restored []string) {
	in := func(ss []SegmentRef) map[string]bool {
		m := make(map[string]bool, len(ss))
		for _, s := range ss {
			m[s.ID] = true
		}
		return m
	}
	inCur, inTo := in(cur), in(to)
	dropped, restored = []string{}, []string{}
	for _, s := range cur {
		if !inTo[s.ID] {
			dropped = append(dropped, s.ID)
		}
	}
	for _, s := range to {
		if !inCur[s.ID] {
			restored = append(restored, s.ID)
		}
	}
	return dropped, restored
}

// damaged checks the blocks of segs (present, and with deep intact) and
// returns one Problem per bad segment, its id as the only path. known
// caches results by segment id across calls.
func (c *catalog) damaged(ctx context.Context, segs []SegmentRef, deep bool, known map[string]*Problem) []Problem {
	var bad []Problem
	for _, s := range segs {
		p, ok := known[s.ID]
		if !ok {
			p = c.checkSegment(ctx, s, deep)
			if known != nil {
				known[s.ID] = p
			}
		}
		if p != nil {
			bad = append(bad, *p)
		}
	}
	return bad
}

func (c *catalog) checkSegment(ctx context.Context, s SegmentRef, deep bool) *Problem {
	var buf []byte
	for _, l := range s.Blocks {
		var err error
		if deep {
			buf = slices.Grow(buf[:0], int(l.Size))[:l.Size]
			err = blockstore.ReadVerified(ctx, c.blocks, l, buf)
		} else {
			var ok bool
			if ok, err = c.blocks.Has(ctx, l.Hash); err == nil && !ok {
				err = fmt.Errorf("%w: %s", blockstore.ErrNotFound, l)
			}
		}
		if err != nil {
			return &Problem{Block: l, Paths: []string{"segment " + s.ID}, Error: err.Error()}
		}
	}
	return nil
}

// Repair finds the newest snapshot whose metadata blocks are all present
// and intact (read and hash-checked) and, unless dry, rolls back to it.
// Change.Damaged says what was found bad and Undone what is lost.
func (c *Catalog) Repair(ctx context.Context, dryRun bool) (*Change, error) {
	h, err := c.cat.loadLenient(ctx)
	if err != nil && h.version == "" {
		return nil, err // the ref itself cannot be read or parsed
	}
	if err != nil || h.version == "" {
		return c.repairFromTags(ctx, h, err, dryRun)
	}
	known := map[string]*Problem{}
	var damaged []Problem
	for i, s := range h.snapshots() {
		m := h.m
		if i == 0 && h.damage != nil {
			damaged = append(damaged, Problem{Block: s.Manifest[0], Paths: []string{fmt.Sprintf("manifest of snapshot %d", s.Generation)}, Error: h.damage.Error()})
			continue
		}
		if i > 0 {
			if m, err = c.cat.readManifest(ctx, s.Manifest); err != nil {
				damaged = append(damaged, Problem{Block: s.Manifest[0], Paths: []string{fmt.Sprintf("manifest of snapshot %d", s.Generation)}, Error: err.Error()})
				continue
			}
		}
		bad := c.cat.damaged(ctx, m.Segments, true, known)
		if len(bad) > 0 {
			damaged = appendNew(damaged, bad)
			continue
		}
		if i == 0 {
			return &Change{DryRun: dryRun, From: s, To: s, Undone: []uint64{}, Dropped: []string{}, Restored: []string{}}, nil
		}
		ch, err := c.restore(ctx, h, s, OpRepair, dryRun)
		if ch != nil {
			ch.Damaged = damaged
		}
		return ch, err
	}
	return nil, fmt.Errorf("no snapshot of %s has all its metadata: %d damaged segments or manifests, first %s: %s",
		c.Spec, len(damaged), damaged[0].Paths[0], damaged[0].Error)
}

func appendNew(have, more []Problem) []Problem {
	seen := map[string]bool{}
	for _, p := range have {
		seen[p.Paths[0]] = true
	}
	for _, p := range more {
		if !seen[p.Paths[0]] {
			have = append(have, p)
			seen[p.Paths[0]] = true
		}
	}
	return have
}

// repairFromTags is repair when the current manifest (which holds the
// history) is unreadable, cause, or the head ref is gone: each tag records
// its snapshot's manifest, so the newest tagged snapshot whose metadata is
// whole is published again as the head. The snapshots after it are not
// known any more; the new snapshot's number is above every one known.
func (c *Catalog) repairFromTags(ctx context.Context, h head, cause error, dryRun bool) (*Change, error) {
	what := "meta/head is missing"
	if cause != nil {
		what = "the current manifest is unreadable: " + cause.Error()
	}
	damaged := []Problem{{Paths: []string{"current manifest"}, Error: what}}
	if len(h.locs) > 0 {
		damaged[0].Block = h.locs[0]
	}
	tags, err := c.Tags(ctx)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(tags, func(i, j int) bool { return tags[i].Generation > tags[j].Generation })
	var top uint64
	for _, t := range tags {
		top = max(top, t.Generation)
	}
	known := map[string]*Problem{}
	for _, t := range tags {
		m, err := c.cat.readManifest(ctx, t.Manifest)
		if err != nil {
			damaged = append(damaged, Problem{Block: t.Manifest[0], Paths: []string{fmt.Sprintf("manifest of snapshot %d (tag %s)", t.Generation, t.Name)}, Error: err.Error()})
			continue
		}
		if bad := c.cat.damaged(ctx, m.Segments, true, known); len(bad) > 0 {
			damaged = appendNew(damaged, bad)
			continue
		}
		to := head{m: m, version: "tag", locs: t.Manifest}.current()
		ch := &Change{DryRun: dryRun, To: to, Undone: []uint64{}, Dropped: []string{}, Restored: []string{}, Damaged: damaged}
		for _, s := range m.Segments {
			ch.Restored = append(ch.Restored, s.ID)
		}
		if dryRun {
			return ch, nil
		}
		next := successor(head{m: m, version: "tag", locs: t.Manifest}, m, Snapshot{Op: OpRepair, Target: t.Generation})
		next.Generation = max(top, m.Generation) + 1
		next.Snapshot.Generation = next.Generation
		if _, err := c.cat.replaceHead(ctx, next, h.version); err != nil {
			return nil, err
		}
		ch.Published = next.Snapshot
		return ch, nil
	}
	if len(tags) == 0 {
		return nil, fmt.Errorf("%s and no tag names an older snapshot: nothing to repair from (see docs/operations.md)", what)
	}
	return nil, fmt.Errorf("%s, and no tagged snapshot is whole either (%d damaged)", what, len(damaged)-1)
}
