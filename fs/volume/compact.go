package volume

import (
	"context"
	"errors"
	"fmt"
	"os"

	"blockfs/fs/tree"
	"blockfs/objects"
)

// Compaction and rebuilds: the two ways the set of segments a volume
// ingested stops being a subset of the store's.
//
// Every publish adds segments, so a store of many imports makes every new
// mount fetch and ingest many small segments. Compaction writes the live
// state of the metadata (objects.Log.Export: records byte for byte, so
// versions and CRCs are kept) as a few fresh segments and swaps them for
// the ones they cover by the same compare-and-swap as a publish. Keeping
// versions is what makes racing imports safe: a publish that lost the race
// to a compaction merges its segments into the compacted list and retries,
// and its writes beat (or lose to) the compacted objects exactly as they
// would have the originals. The old segments are not deleted: the
// snapshots in the history still name them.
//
// A rollback (or repair) also drops segments, but to go back. A private
// log cannot forget what it ingested, so a volume that holds no writes of
// its own (a mount) builds a fresh log from the new manifest and swaps it
// in (rebuildLocked); one that does (an import) keeps going only if every
// change since it last looked was a publish or a compaction, and reports
// ErrRewound otherwise.

// DefaultCompactAbove is Options.CompactAbove's default: past this many
// segments, start-up time grows noticeably with the number of imports.
const DefaultCompactAbove = 64

// OpCompact is the op of a snapshot made by a compaction.
const OpCompact = "compact"

// compactSegmentSize bounds the segments a compaction writes: big enough
// that even a large tree is a handful, small enough to stay far below
// objects.MaxSegmentSize and to ingest in parallel pieces.
const compactSegmentSize = 64 << 20

// Compacted is what a compaction did.
type Compacted struct {
	SegmentsBefore int                 `json:"segments_before"`
	SegmentsAfter  int                 `json:"segments_after"` // compacted ones plus any a racing publish added
	Written        objects.ExportStats `json:"written"`
	Published      *Snapshot           `json:"published"` // nil if there was nothing to compact
}

// errCompactRaced: a rollback or repair changed the segments a compaction
// covers before it could publish; it starts over from the new state.
var errCompactRaced = errors.New("the segments being compacted changed in the store")

// Compact merges the store's metadata into a fresh segment set and
// publishes it as a new snapshot (see above). A store of at most one
// segment is left alone.
func (v *Volume) Compact(ctx context.Context) (*Compacted, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.at != nil {
		return nil, fmt.Errorf("store %s: opened at snapshot %d: cannot compact", v.Spec, v.at.Generation)
	}
	if v.lazy {
		return nil, fmt.Errorf("store %s: opened lazily (read-only): cannot compact", v.Spec)
	}
	return v.compactLocked(ctx)
}

func (v *Volume) compactLocked(ctx context.Context) (*Compacted, error) {
	for attempt := 1; ; attempt++ {
		c, err := v.compactOnce(ctx)
		if !errors.Is(err, errCompactRaced) {
			return c, err
		}
		if attempt >= 10 {
			// Every try lost to another writer changing what it covered
			// (another compaction, most often, which did the job). Not
			// compacting is always safe: report nothing compacted; what
			// this try wrote is unreachable and gc collects it.
			return &Compacted{SegmentsBefore: c.SegmentsBefore, SegmentsAfter: c.SegmentsBefore, Written: c.Written}, nil
		}
	}
}

// compactOnce brings the volume up to date, exports its state and swaps
// it for the segments it covers, unless those changed meanwhile.
func (v *Volume) compactOnce(ctx context.Context) (*Compacted, error) {
	if _, err := v.refreshLocked(ctx); err != nil {
		return nil, err
	}
	covered := make(map[string]bool, len(v.cur.Segments))
	for _, s := range v.cur.Segments {
		covered[s.ID] = true
	}
	c := &Compacted{SegmentsBefore: len(covered), SegmentsAfter: len(covered)}
	if len(covered) <= 1 {
		return c, nil
	}
	var refs []SegmentRef
	st, err := v.Meta.Export(ctx, compactSegmentSize, func(data []byte) error {
		locs, err := v.cat.putBlob(ctx, data)
		if err != nil {
			return fmt.Errorf("storing compacted segment: %w", err)
		}
		id := fmt.Sprintf("%s-c%d-%d", v.importID, v.cur.Generation, len(refs)+1)
		refs = append(refs, SegmentRef{ID: id, Size: int64(len(data)), Blocks: locs})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compacting metadata: %w", err)
	}
	c.Written = st
	m, _, err := v.cat.update(ctx, Snapshot{Op: OpCompact, Changes: &Changes{}}, func(m *Manifest) error {
		n := 0
		for _, s := range m.Segments {
			if covered[s.ID] {
				n++
			}
		}
		if n != len(covered) {
			return errCompactRaced
		}
		// Compacted segments first: they hold the older state, and the
		// manifest order is the order new volumes ingest in.
		out := append([]SegmentRef{}, refs...)
		for _, s := range m.Segments {
			if !covered[s.ID] {
				out = append(out, s)
			}
		}
		m.Segments = out
		same := make(map[string]bool, len(refs))
		for _, r := range refs {
			same[r.ID] = true
		}
		return v.attachParts(ctx, m, same, covered)
	})
	if errors.Is(err, errCompactRaced) {
		return c, err
	}
	if err != nil {
		return nil, err
	}
	// The private log holds the compacted state already: the new segments
	// count as ingested, and what they cover no longer does.
	for id := range covered {
		delete(v.ingested, id)
		delete(v.local, id)
	}
	for _, r := range refs {
		v.ingested[r.ID] = true
	}
	v.counters.generation.Store(int64(m.Generation))
	c.SegmentsAfter, c.Published = len(m.Segments), m.Snapshot
	return c, nil
}

// followShrunk handles a head that lacks segment lost, which this volume
// ingested: compacted away or rolled back.
func (v *Volume) followShrunk(ctx context.Context, h head, lost string) (bool, error) {
	if !v.hasOwnWrites() {
		if err := v.rebuildLocked(ctx, h); err != nil {
			return false, fmt.Errorf("snapshot %d lacks segment %s: rebuilding the metadata: %w", h.m.Generation, lost, err)
		}
		return true, nil
	}
	if !v.onlyCompactedSince(h.m) {
		return false, fmt.Errorf("snapshot %d lacks segment %s: %w", h.m.Generation, lost, ErrRewound)
	}
	// The missing segments were compacted: the compacted ones hold their
	// objects with the same versions, so ingesting them changes nothing
	// that was seen, and brings what was not.
	in := make(map[string]bool, len(h.m.Segments))
	for _, s := range h.m.Segments {
		in[s.ID] = true
	}
	for id := range v.ingested {
		if !in[id] {
			delete(v.ingested, id)
			delete(v.local, id)
		}
	}
	return v.advanceLocked(ctx, h)
}

// onlyCompactedSince reports whether every snapshot m records after the
// one this volume last read is a publish or a compaction.
func (v *Volume) onlyCompactedSince(m Manifest) bool {
	seen := v.cur.Generation
	all := append(m.History, Snapshot{Generation: m.Generation, Op: OpLegacy})
	if m.Snapshot != nil {
		all[len(all)-1] = *m.Snapshot
	}
	for _, s := range all {
		if s.Generation > seen && s.Op != OpPublish && s.Op != OpCompact {
			return false
		}
	}
	return true
}

// hasOwnWrites reports whether the private log holds records this
// process wrote (published or not), which a rebuild would lose.
func (v *Volume) hasOwnWrites() bool {
	for _, s := range v.Meta.Segments() {
		if !s.Ingested && s.MaxVersion != 0 {
			return true
		}
	}
	return false
}

// rebuildLocked builds a fresh private log holding exactly h's segments
// (from the local copies where there are some, else from the store) and
// swaps it in: from then on the tree serves h. Nodes handed out before
// (open files) keep their block lists; the old log stays open until the
// next refresh so that lookups running during the swap finish.
func (v *Volume) rebuildLocked(ctx context.Context, h head) error {
	dir, err := makeMetaDir(v.metaParent, v.logger)
	if err != nil {
		return err
	}
	log, err := objects.Open(dir, objects.Options{Sync: objects.SyncNone})
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("metadata log: %w", err)
	}
	nv := &Volume{Spec: v.Spec, cat: v.cat, Meta: log, logger: v.logger,
		ingested: map[string]bool{}, local: map[string]string{}, skipped: map[string]bool{}, published: map[uint32]bool{}}
	nv.reuse = v.local
	nv.onChange = v.onChange // a mount drops what the kernel holds of the new tree's paths
	if _, err := nv.ingestLocked(ctx, h.m); err != nil {
		log.Close()
		os.RemoveAll(dir)
		return err
	}
	if v.onChange != nil {
		// ... and of the old tree's: paths the rollback removed are in no
		// segment of the new manifest. Walking every path is fine for
		// what a rollback is, rare.
		if err := v.Tree.Walk("/", func(p string, _ *tree.Node) error { v.onChange(p); return nil }); err != nil {
			v.logf("blockfs: listing the old tree to invalidate it: %v", err)
		}
	}
	v.retired = append(v.retired, retiredLog{log: v.Meta, dir: v.metaDir})
	v.Meta, v.metaDir = log, dir
	v.Tree.SetLog(log)
	v.partsMemo, v.partsDirty = nil, nil // a new log: the next build is a full one
	v.ingested, v.local, v.skipped, v.published = nv.ingested, nv.local, nv.skipped, nv.published
	v.refVer, v.cur = h.version, h.m
	v.counters.segments.Store(int64(len(v.ingested)))
	v.counters.skipped.Add(nv.counters.skipped.Load())
	v.counters.generation.Store(int64(h.m.Generation))
	v.counters.rebuilds.Add(1)
	return nil
}

// retiredLog is a private log replaced by a rebuild.
type retiredLog struct {
	log *objects.Log
	dir string
}

// closeRetired closes the logs retired before this refresh: no lookup
// started before the swap is still running a refresh interval later.
func (v *Volume) closeRetired() {
	v.retireAll()
}

func (v *Volume) retireAll() {
	for _, r := range v.retired {
		r.log.Close()
		os.RemoveAll(r.dir)
	}
	v.retired = nil
}

// segmentPath is the file of local segment id.
func (v *Volume) segmentPath(id uint32) string {
	for _, s := range v.Meta.Segments() {
		if s.ID == id {
			return s.Path
		}
	}
	return ""
}
