package volume

import (
	"context"
	"fmt"
	"io"
	"log"
	"path"
	"strings"

	"blockfs/blockstore"
	"blockfs/fs/parts"
	"blockfs/fs/tree"
	"blockfs/objects"
)

// Parts: the metadata of every snapshot a writer publishes is also written
// as a tree of parts (fs/parts), which the manifest names. A lazy volume
// (Options.Lazy: a mount) serves its tree from the parts, fetched when a
// path first needs them, instead of ingesting every segment at open; a
// manifest without usable parts (written before them, or rolled back to a
// snapshot from before them) is served by ingesting, as it always was.
//
// A writer builds the parts from its private log, which holds the whole
// tree, on every publish (and compaction): its first build reads the
// whole tree, later ones only the directories above paths changed since
// (markDirty), pointing at the earlier parts of the rest; unchanged
// subtrees encode to the same blocks, so only changed parts are uploaded
// (see docs/metadata.md).

// attachParts sets m.Parts to the part tree of the snapshot m is about to
// publish, built from the private log after ingesting what m lists that
// the log lacks (a racing publish merged in). same names segments whose
// objects the log holds under another id (this publish's own, a
// compaction's output), covered segments the log holds that m no longer
// lists on purpose (compacted). If the log holds a segment m lacks
// otherwise (m was rolled back), or the build fails, m is published
// without parts: correct, only slower to mount.
func (v *Volume) attachParts(ctx context.Context, m *Manifest, same, covered map[string]bool) error {
	m.Parts = nil
	if v.partsMax < 0 {
		return nil
	}
	// Whatever happens below, the next build starts from this one's
	// outcome: forget what the last one stored unless this one succeeds.
	reuse, dirty := v.partsMemo, v.partsDirty
	v.partsMemo, v.partsDirty = nil, nil
	in := make(map[string]bool, len(m.Segments))
	for _, s := range m.Segments {
		in[s.ID] = true
	}
	for id := range v.ingested {
		if !in[id] && !covered[id] {
			return nil
		}
	}
	v.partsDirty = dirty // ingesting below adds to it
	var missing []SegmentRef
	for _, s := range m.Segments {
		if !v.ingested[s.ID] && !v.skipped[s.ID] && !same[s.ID] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		if _, err := v.ingestLocked(ctx, Manifest{Segments: missing}); err != nil {
			return err
		}
	}
	opts := parts.BuildOptions{MaxEntries: v.partsMax}
	if reuse != nil && v.partsDirty != nil {
		d := v.partsDirty
		opts.Reuse, opts.Dirty = reuse, func(p string) bool { return d[p] }
	}
	v.partsDirty = nil
	ref, st, err := parts.Build(ctx, tree.LogSource{Log: v.Meta}, opts, v.putPart)
	if err != nil {
		v.logf("blockfs: publishing %s without metadata parts (its mounts ingest every segment): %v", v.Spec, err)
		return nil
	}
	v.partsMemo, v.partsDirty = st.Stored, map[string]bool{}
	v.counters.partsBuilt.Add(int64(st.Parts))
	m.Parts = &PartsRef{Format: parts.Format, Ref: ref}
	return nil
}

// markDirty records that path p changed since the last build of parts:
// every directory above it must be read again by the next one. A key that
// is no tree path makes the next build a full one.
func (v *Volume) markDirty(p string) {
	if v.partsDirty == nil {
		return
	}
	if !strings.HasPrefix(p, "/") {
		v.partsMemo, v.partsDirty = nil, nil
		return
	}
	for p != "/" {
		p = path.Dir(p)
		if v.partsDirty[p] {
			return // and so is everything above it
		}
		v.partsDirty[p] = true
	}
}

// markSegmentDirty marks the paths segment data writes or deletes.
func (v *Volume) markSegmentDirty(data []byte) {
	if v.partsDirty == nil {
		return
	}
	if err := objects.SegmentKeys(data, v.markDirty); err != nil {
		v.partsMemo, v.partsDirty = nil, nil
	}
}

// putPart stores an encoded part as blocks of at most metaChunk bytes,
// skipping the blocks this volume stored before: an unchanged subtree's
// part is the same block at every publish.
func (v *Volume) putPart(ctx context.Context, data []byte) ([]blockstore.Locator, error) {
	var locs []blockstore.Locator
	for len(data) > 0 {
		n := min(len(data), metaChunk)
		loc := blockstore.LocatorOf(data[:n])
		if !v.partsPut[loc.Hash] {
			if err := v.cat.blocks.Put(ctx, loc.Hash, data[:n]); err != nil {
				return nil, err
			}
			v.partsPut[loc.Hash] = true
			v.counters.published.Add(1)
		}
		locs = append(locs, loc)
		data = data[n:]
	}
	if err := v.cat.flush(ctx); err != nil {
		return nil, err
	}
	return locs, nil
}

// partsReader is the reader of m's parts if the volume is lazy and they
// serve (the root part fetches and verifies), else nil: the caller
// ingests. A root part that cannot be used is logged (by the cache) and
// the segments serve instead, so one bad block does not stop a mount.
func (v *Volume) partsReader(ctx context.Context, m Manifest) *parts.Reader {
	if !v.lazy || !m.usableParts() {
		return nil
	}
	r := v.pcache.Reader(m.Parts.Ref)
	if err := r.Load(ctx); err != nil {
		v.logf("blockfs: the root metadata part of %s cannot be used (%v): ingesting its segments instead", v.Spec, err)
		return nil
	}
	return r
}

// advanceParts makes r (the parts of head h) what the tree serves,
// reporting to onChange what differs from what it served.
func (v *Volume) advanceParts(ctx context.Context, h head, r *parts.Reader) (bool, error) {
	old := v.served
	var oldPaths []string
	if v.onChange != nil && old == nil && v.refVer != "" {
		// From an ingested tree (a snapshot without parts) to parts: rare
		// (a rollback across the release that added parts), so every path
		// of both trees is reported.
		if err := v.Tree.Walk("/", func(p string, _ *tree.Node) error { oldPaths = append(oldPaths, p); return nil }); err != nil {
			v.logf("blockfs: listing the old tree to invalidate it: %v", err)
		}
	}
	// The new tree is visible before any path is reported.
	v.serveParts(r)
	v.refVer, v.cur = h.version, h.m
	v.counters.generation.Store(int64(h.m.Generation))
	if v.onChange == nil {
		return true, nil
	}
	if old != nil {
		if err := parts.Diff(ctx, old, r, v.onChange); err != nil {
			v.logf("blockfs: comparing the metadata parts of two generations of %s: %v", v.Spec, err)
		}
		return true, nil
	}
	for _, p := range oldPaths {
		v.onChange(p)
	}
	if err := v.Tree.Walk("/", func(p string, _ *tree.Node) error { v.onChange(p); return nil }); err != nil {
		v.logf("blockfs: listing the new tree to invalidate it: %v", err)
	}
	return true, nil
}

// leaveParts is a refresh of a lazy volume serving parts to head h, which
// has none: its tree is ingested into a fresh log (rebuildLocked reports
// every path of both trees).
func (v *Volume) leaveParts(ctx context.Context, h head) (bool, error) {
	if err := v.rebuildLocked(ctx, h); err != nil {
		return false, fmt.Errorf("snapshot %d has no metadata parts: ingesting it: %w", h.m.Generation, err)
	}
	v.served = nil
	v.counters.partsServed.Store(false)
	v.totals.Store(nil)
	return true, nil
}

// PartsStats are what a lazy volume's parts cost: parts fetched from the
// store, and the bytes held decoded.
func (v *Volume) partsStats() (fetched, resident int64) {
	if v.pcache == nil {
		return 0, 0
	}
	return v.pcache.Fetches(), v.pcache.Resident()
}

// walkParts calls fn with every block of the part tree of m (none if m has
// no usable parts), reading each part through a private cache.
func (c *catalog) walkParts(ctx context.Context, m Manifest, fn func(root string, l blockstore.Locator)) error {
	if !m.usableParts() {
		return nil
	}
	pc := parts.NewCache(c.blocks, parts.CacheOptions{Bytes: 64 << 20, Logger: log.New(io.Discard, "", 0)})
	defer pc.Close()
	return pc.Reader(m.Parts.Ref).Walk(ctx, func(root string, r parts.Ref) error {
		for _, l := range r.Blocks {
			fn(root, l)
		}
		return nil
	})
}

// serveParts makes r what the tree serves.
func (v *Volume) serveParts(r *parts.Reader) {
	v.Tree.SetSource(r)
	v.served = r
	v.counters.partsServed.Store(true)
	t := r.Root().Totals
	v.totals.Store(&t)
}

// Totals are the counts of the tree served, below the root (files,
// directories, symlinks, and the bytes of the files), when the volume
// serves parts: a statfs or du that needs no walk. ok is false otherwise
// (walk the tree). It does not wait for a refresh.
func (v *Volume) Totals() (t parts.Totals, ok bool) {
	if p := v.totals.Load(); p != nil {
		return *p, true
	}
	return parts.Totals{}, false
}
