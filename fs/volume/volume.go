// Package volume is an opened blockfs store with its metadata: the block
// store (opened by storeurl) and a private objects.Log kept in step with the
// catalog published in the store itself (catalog.go), by Refresh (ingest
// what others published) and Publish (an import's). Import and mount both
// work on a Volume; Verify checks the blocks its files use.
package volume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/parts"
	"blockfs/fs/tree"
	"blockfs/objects"
)

// Volume is an opened store: its blocks and, in a private local log, the
// metadata published to it (see catalog.go).
type Volume struct {
	Spec   string // the store string it was opened from
	Blocks blockstore.Store
	Meta   *objects.Log
	Tree   *tree.Tree

	store      *storeurl.Stack
	cat        catalog
	metaDir    string
	metaParent string // Options.MetaDir: where rebuilt logs' directories go
	ownsDir    bool
	borrowed   bool // the store belongs to another volume (OpenAt): Close leaves it open
	importID   string
	// compactAbove: Publish compacts when the manifest lists more segments.
	compactAbove int

	at        *Snapshot  // Options.At: the pinned snapshot
	mu        sync.Mutex // one Refresh or Publish at a time
	refVer    string     // ref version last ingested
	cur       Manifest   // the manifest read at refVer
	ingested  map[string]bool
	local     map[string]string // published segment id -> its copy in the private log (rebuild reads it)
	skipped   map[string]bool   // poisoned segments, not ingested (see refreshLocked)
	retired   []retiredLog      // logs replaced by a rebuild, closed at the next refresh
	reuse     map[string]string // rebuild: local copies of segments to read instead of the store
	logger    *log.Logger
	published map[uint32]bool // local segments that are in the store already
	onChange  func(p string)  // RefreshNotify's callback, during it
	counters  metaCounters
	wmu       sync.Mutex     // Write, and Publish sealing what it wrote
	pend      pendingChanges // under wmu: what Write noted since the last publish (changes.go)

	// Parts (parts.go): lazy volumes serve from pcache's parts; writers
	// build them at every publish.
	lazy     bool
	pcache   *parts.Cache
	served   *parts.Reader // the parts the tree serves (nil: the log)
	partsMax int
	partsPut map[blockstore.Hash]bool // part blocks this volume stored
	// partsMemo: the parts the last build stored, by root, and partsDirty
	// the directories above paths changed since (nil: build in full).
	partsMemo  map[string]parts.Ref
	partsDirty map[string]bool
	totals     atomic.Pointer[parts.Totals] // of the parts served (see Totals)
}

// MetaStats describe the volume's metadata: what the mount has ingested
// and how refreshing goes.
type MetaStats struct {
	Generation    uint64 `json:"generation"`
	Segments      int64  `json:"segments"`
	Refreshes     int64  `json:"refreshes"`
	Changes       int64  `json:"changes"`
	RefreshErrors int64  `json:"refresh_errors"`
	LastRefreshNs int64  `json:"last_refresh_unix_ns"` // last refresh that reached the store
	// LastError is why the latest refresh failed ("" once one succeeds
	// again): an unreachable store, or one whose manifest went back or
	// vanished (ErrGenerationBackwards). A mount serving what it has is
	// not healthy while it is set.
	LastError string `json:"last_error,omitempty"`
	// PublishedBlocks counts the metadata blocks (segments and the
	// manifests that made it into the ref) this process published.
	PublishedBlocks int64 `json:"published_blocks"`
	// SkippedSegments counts published segments refused by Ingest as
	// corrupt (poison) and skipped, each logged.
	SkippedSegments int64 `json:"skipped_segments"`
	// Rebuilds counts the times the metadata was rebuilt because the
	// store's segments shrank (a rollback, repair or compaction).
	Rebuilds int64 `json:"rebuilds"`
	// Parts: a lazy volume's parts fetched from the store and the bytes it
	// holds decoded (PartsServed: it serves from parts); a writer's parts
	// built.
	PartsServed   bool  `json:"parts_served"`
	PartsFetched  int64 `json:"parts_fetched"`
	PartsResident int64 `json:"parts_resident_bytes"`
	PartsBuilt    int64 `json:"parts_built"`
}

type metaCounters struct {
	generation, segments, refreshes, changes, errors, last, published, skipped, rebuilds, partsBuilt atomic.Int64
	lastErr                                                                                          atomic.Pointer[string]
	partsServed                                                                                      atomic.Bool
}

// ErrGenerationBackwards says the store's manifest is older than one this
// volume already ingested, or gone: the store was replaced, restored from
// an old backup or emptied. The volume keeps serving what it ingested
// rather than silently going back; the refresh fails until the store
// catches up again.
var ErrGenerationBackwards = errors.New("store's metadata generation went backwards")

// Options say how a Volume is opened: how to open its store, and where
// its private metadata log lives.
type Options struct {
	storeurl.Options
	// MetaDir is where the private metadata log's directory is made
	// (blockfs-meta-*, removed by Close); "" means os.TempDir(). The log
	// holds a copy of every ingested segment, so an operator may want it
	// on a larger or faster disk than /tmp.
	MetaDir string
	// At pins the volume to a snapshot (a generation number or a tag):
	// it serves exactly that version and Refresh never changes it. Such a
	// volume must not Publish.
	At string
	// Logger gets loud errors that do not fail the volume (a skipped
	// poisoned segment); nil means log.Default().
	Logger *log.Logger
	// CompactAbove: a Publish that leaves the manifest with more segments
	// than this compacts it (see Compact). 0 means DefaultCompactAbove; < 0
	// never.
	CompactAbove int
	// Lazy opens the volume read-only (a mount, a snapshot view): when the
	// manifest names metadata parts, the tree is served from them, fetched
	// on demand, and no segment is ingested. Such a volume must not
	// Publish or Compact.
	Lazy bool
	// PartsCacheBytes bounds the parts a lazy volume keeps decoded; 0 is
	// parts.DefaultCacheBytes.
	PartsCacheBytes int64
	// PartsMaxEntries bounds the entries of the parts a publish writes; 0
	// is parts.DefaultMaxEntries, < 0 writes no parts (the manifests of
	// releases before parts).
	PartsMaxEntries int
}

// Open opens the store named by spec (see storeurl.Open) and ingests the
// metadata published to it into a private log.
func Open(ctx context.Context, spec string, opts Options) (*Volume, error) {
	store, err := storeurl.Open(ctx, spec, opts.Options)
	if err != nil {
		return nil, err
	}
	return openOn(ctx, spec, store, false, opts)
}

// openOn opens the volume over an opened store; a borrowed store is
// someone else's to close (see OpenAt).
func openOn(ctx context.Context, spec string, store *storeurl.Stack, borrowed bool, opts Options) (_ *Volume, err error) {
	refs, ok := blockstore.As[blockstore.RefStore](store.Blocks)
	if !ok {
		if !borrowed {
			store.Close()
		}
		return nil, fmt.Errorf("store %s: %w", spec, ErrNoRefs)
	}
	v := &Volume{
		Spec: spec, Blocks: store.Blocks, store: store, cat: catalog{blocks: store.Blocks, refs: refs, flush: flusherOf(store.Blocks)},
		ingested: map[string]bool{}, local: map[string]string{}, skipped: map[string]bool{}, published: map[uint32]bool{}, logger: opts.Logger,
		metaParent: opts.MetaDir, compactAbove: opts.CompactAbove, borrowed: borrowed,
		lazy: opts.Lazy, partsMax: opts.PartsMaxEntries, partsPut: map[blockstore.Hash]bool{},
	}
	if v.partsMax == 0 {
		v.partsMax = parts.DefaultMaxEntries
	}
	v.pend.seed = maphash.MakeSeed()
	if v.compactAbove == 0 {
		v.compactAbove = DefaultCompactAbove
	}
	if v.logger == nil {
		v.logger = log.Default()
	}
	if v.lazy {
		v.pcache = parts.NewCache(store.Blocks, parts.CacheOptions{Bytes: opts.PartsCacheBytes, Logger: v.logger, Store: spec})
	}
	if v.metaDir, err = makeMetaDir(opts.MetaDir, v.logger); err != nil {
		if !borrowed {
			store.Close()
		}
		return nil, err
	}
	v.ownsDir = true
	id := make([]byte, 8)
	rand.Read(id)
	v.importID = time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(id)
	// The log is private to this process: its durability is the store's,
	// reached by Publish, so appends need not wait for fsync.
	if v.Meta, err = objects.Open(v.metaDir, objects.Options{Sync: objects.SyncNone}); err != nil {
		v.cleanup()
		return nil, fmt.Errorf("store %s: metadata log: %w", spec, err)
	}
	v.Tree = tree.NewTree(v.Meta)
	if opts.At != "" {
		err = v.openAt(ctx, opts.At)
	} else {
		_, err = v.Refresh(ctx)
	}
	if err != nil {
		v.Close()
		if damagedCatalog(err) {
			return nil, fmt.Errorf("store %s: %w (metadata damaged: blockfs repair --dry-run shows how to recover)", spec, err)
		}
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	return v, nil
}

// damagedCatalog reports whether err says the store's metadata is gone or
// bad (rather than unreachable), which repair or rollback can fix.
func damagedCatalog(err error) bool {
	return errors.Is(err, blockstore.ErrNotFound) || errors.Is(err, blockstore.ErrCorrupt) || errors.Is(err, ErrBadManifest)
}

// Refresh ingests the segments published since the last call and reports
// whether there were any.
func (v *Volume) Refresh(ctx context.Context) (bool, error) {
	return v.RefreshNotify(ctx, nil)
}

// RefreshNotify is Refresh that also calls changed (if not nil) with every
// tree path the ingested segments wrote or deleted, once each segment is
// applied (so a Lookup in changed sees the new state), under the volume's
// lock: changed must not call back into the Volume. A mount uses it to
// invalidate exactly the names and listings the kernel caches that a
// refresh changed. A path may be reported although its node is unchanged
// (a segment whose objects lost to newer versions), never the reverse.
func (v *Volume) RefreshNotify(ctx context.Context, changed func(p string)) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.counters.refreshes.Add(1)
	v.onChange = changed
	defer func() { v.onChange = nil }()
	got, err := v.refreshLocked(ctx)
	if err != nil {
		v.counters.errors.Add(1)
		msg := err.Error()
		v.counters.lastErr.Store(&msg)
	} else {
		v.counters.last.Store(time.Now().UnixNano())
		v.counters.lastErr.Store(nil)
	}
	if got {
		v.counters.changes.Add(1)
	}
	return got, err
}

func (v *Volume) refreshLocked(ctx context.Context) (bool, error) {
	if v.at != nil {
		return false, nil // pinned to a snapshot: never changes
	}
	v.closeRetired()
	h, err := v.cat.load(ctx)
	if err != nil || h.version == v.refVer {
		return false, err
	}
	if have := uint64(v.counters.generation.Load()); h.m.Generation < have {
		if h.version == "" {
			return false, fmt.Errorf("%w: the store no longer holds the manifest (generation %d ingested)", ErrGenerationBackwards, have)
		}
		return false, fmt.Errorf("%w: from %d to %d", ErrGenerationBackwards, have, h.m.Generation)
	}
	if r := v.partsReader(ctx, h.m); r != nil {
		return v.advanceParts(ctx, h, r)
	}
	if v.served != nil {
		return v.leaveParts(ctx, h)
	}
	if lost := v.lostSegments(h.m); lost != "" {
		return v.followShrunk(ctx, h, lost)
	}
	return v.advanceLocked(ctx, h)
}

// advanceLocked ingests what head h names that is new and makes h the
// version this volume has read.
func (v *Volume) advanceLocked(ctx context.Context, h head) (bool, error) {
	changed, err := v.ingestLocked(ctx, h.m)
	if err != nil {
		return changed, err
	}
	v.refVer, v.cur = h.version, h.m
	v.counters.generation.Store(int64(h.m.Generation))
	return changed, nil
}

// ingestLocked ingests the segments of m not ingested yet.
func (v *Volume) ingestLocked(ctx context.Context, m Manifest) (bool, error) {
	changed := false
	for _, s := range m.Segments {
		if v.ingested[s.ID] || v.skipped[s.ID] {
			continue
		}
		data, err := v.segmentData(ctx, s)
		if err != nil {
			return changed, fmt.Errorf("metadata segment %s: %w", s.ID, err)
		}
		info, err := v.Meta.Ingest(data)
		if errors.Is(err, objects.ErrCorrupt) {
			// Its blocks verified, so the segment is what was published:
			// poison (a crafted or broken writer), not a read error. Failing
			// would brick every mount, import and verify of the store, so it
			// is skipped, loudly, and counted.
			v.skipped[s.ID] = true
			v.counters.skipped.Add(1)
			v.logf("blockfs: SKIPPING metadata segment %s of store %s: %v (its files are not shown; see docs/operations.md)", s.ID, v.Spec, err)
			continue
		}
		if err != nil {
			return changed, fmt.Errorf("metadata segment %s: %w", s.ID, err)
		}
		v.ingested[s.ID] = true
		v.local[s.ID] = info.Path
		v.published[info.ID] = true
		v.markSegmentDirty(data)
		v.counters.segments.Add(1)
		changed = true
		if v.onChange != nil {
			// The segment verified and ingested whole, so its keys parse.
			if err := objects.SegmentKeys(data, v.onChange); err != nil {
				return changed, fmt.Errorf("metadata segment %s: listing its keys: %w", s.ID, err)
			}
		}
	}
	return changed, nil
}

// segmentData is the content of published segment s: from the store, or
// during a rebuild from the copy the old log holds (verified when it was
// ingested; its header differs, which Ingest accepts).
func (v *Volume) segmentData(ctx context.Context, s SegmentRef) ([]byte, error) {
	if p, ok := v.reuse[s.ID]; ok && p != "" {
		if data, err := os.ReadFile(p); err == nil && int64(len(data)) == s.Size {
			return data, nil
		}
	}
	return v.cat.getBlob(ctx, s.Blocks, s.Size)
}

// openAt ingests snapshot spec (a generation or a tag) and pins the
// volume to it: Refresh never reads the store again.
func (v *Volume) openAt(ctx context.Context, spec string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	h, err := v.cat.loadLenient(ctx)
	if err != nil {
		return err
	}
	s, err := v.cat.resolve(ctx, h, spec)
	if err != nil {
		return err
	}
	m, err := v.cat.readManifest(ctx, s.Manifest)
	if err != nil {
		return fmt.Errorf("snapshot %d: %w", s.Generation, err)
	}
	if r := v.partsReader(ctx, m); r != nil {
		v.serveParts(r)
	} else if _, err := v.ingestLocked(ctx, m); err != nil {
		return fmt.Errorf("snapshot %d: %w", s.Generation, err)
	}
	v.at, v.cur = &s, m
	v.refVer = "at:" + strconv.FormatUint(s.Generation, 10)
	v.counters.generation.Store(int64(s.Generation))
	return nil
}

// At is the snapshot the volume is pinned to (Options.At), or nil.
func (v *Volume) At() *Snapshot { return v.at }

// ErrRewound is returned by Refresh once the store's catalog was rolled
// back (or repaired) past segments this volume has ingested while the
// volume holds writes of its own not published yet: a private log cannot
// forget objects, and a rebuilt one would lose those writes, so the volume
// keeps what it has. (A volume without such writes, a mount, rebuilds
// instead: see followShrunk.)
var ErrRewound = errors.New("metadata rolled back in the store; remount to serve the restored snapshot")

// lostSegments names a segment this volume ingested that m no longer
// lists ("" if none).
func (v *Volume) lostSegments(m Manifest) string {
	in := make(map[string]bool, len(m.Segments))
	for _, s := range m.Segments {
		in[s.ID] = true
	}
	for id := range v.ingested {
		if !in[id] {
			return id
		}
	}
	return ""
}

func (v *Volume) logf(format string, a ...any) {
	if v.logger != nil {
		v.logger.Printf(format, a...)
	}
}

// Publish seals what this process wrote to its log and makes it part of
// the store's metadata: after it returns, a new mount anywhere sees it.
func (v *Volume) Publish(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.at != nil {
		return fmt.Errorf("store %s: opened at snapshot %d: cannot publish", v.Spec, v.at.Generation)
	}
	if v.lazy {
		return fmt.Errorf("store %s: opened lazily (read-only): cannot publish", v.Spec)
	}
	before, changes, err := v.sealPending()
	if err != nil {
		return err
	}
	var fresh []SegmentRef
	var local []uint32
	for _, s := range v.Meta.Segments() {
		if !s.Sealed || v.published[s.ID] {
			continue
		}
		data, err := os.ReadFile(s.Path)
		if err != nil {
			v.restorePending(before)
			return fmt.Errorf("reading metadata segment: %w", err)
		}
		if ok, err := covered(data, before); err != nil || !ok {
			changes = nil // written to Meta directly: not counted
		}
		v.markSegmentDirty(data)
		locs, err := v.cat.putBlob(ctx, data)
		if err != nil {
			v.restorePending(before)
			return fmt.Errorf("storing metadata segment: %w", err)
		}
		fresh = append(fresh, SegmentRef{ID: fmt.Sprintf("%s-%d", v.importID, s.ID), Size: int64(len(data)), Blocks: locs})
		local = append(local, s.ID)
	}
	if len(fresh) == 0 {
		return nil
	}
	m, err := v.publishLocked(ctx, fresh, local, changes)
	if err != nil {
		v.restorePending(before)
		return err
	}
	if v.compactAbove > 0 && len(m.Segments) > v.compactAbove {
		// The publish itself succeeded: a compaction that fails (a rollback
		// raced it, the store went away) leaves a store that is merely slower
		// to mount, so it is logged, not returned.
		if _, err := v.compactLocked(ctx); err != nil {
			v.logf("blockfs: compacting the metadata of %s (%d segments): %v", v.Spec, len(m.Segments), err)
		}
	}
	return nil
}

// sealPending seals what was written since the last publish and counts
// what it changed (changes.go), both under wmu so that no Write falls
// between the two.
func (v *Volume) sealPending() (map[string]nodeSum, *Changes, error) {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	if err := v.Meta.Seal(); err != nil {
		return nil, nil, fmt.Errorf("sealing metadata: %w", err)
	}
	return v.takePending()
}

// publishLocked adds the segments fresh (local ids local) to the manifest,
// as a snapshot that made changes (nil: not known).
func (v *Volume) publishLocked(ctx context.Context, fresh []SegmentRef, local []uint32, changes *Changes) (Manifest, error) {
	maxVersion := v.Meta.MaxVersion()
	own := make(map[string]bool, len(fresh))
	for _, s := range fresh {
		own[s.ID] = true
	}
	m, manifestLocs, err := v.cat.update(ctx, Snapshot{Op: OpPublish, Changes: changes}, func(m *Manifest) error {
		have := make(map[string]bool, len(m.Segments))
		for _, s := range m.Segments {
			have[s.ID] = true
		}
		for _, s := range fresh {
			if !have[s.ID] {
				m.Segments = append(m.Segments, s)
			}
		}
		m.MaxVersion = max(m.MaxVersion, maxVersion)
		// Run again on every retry: a manifest another publisher changed
		// gets parts built from the merged log.
		return v.attachParts(ctx, m, own, nil)
	})
	if err != nil {
		return m, err
	}
	published := int64(len(manifestLocs))
	for i, s := range fresh {
		v.ingested[s.ID] = true
		v.published[local[i]] = true
		v.local[s.ID] = v.segmentPath(local[i])
		published += int64(len(s.Blocks))
	}
	v.counters.published.Add(published)
	v.counters.generation.Store(int64(m.Generation))
	return m, nil
}

// HasMetadata reports whether the store had published metadata (a
// meta/head ref) when last refreshed.
func (v *Volume) HasMetadata() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.refVer != ""
}

// Store is the opened store stack the volume reads through (its disk
// cache, if any, and the backend behind it).
func (v *Volume) Store() *storeurl.Stack { return v.store }

// MetaStats snapshots the metadata counters.
func (v *Volume) MetaStats() MetaStats {
	fetched, resident := v.partsStats()
	return MetaStats{
		Generation: uint64(v.counters.generation.Load()), Segments: v.counters.segments.Load(),
		Refreshes: v.counters.refreshes.Load(), Changes: v.counters.changes.Load(),
		RefreshErrors: v.counters.errors.Load(), LastRefreshNs: v.counters.last.Load(),
		PublishedBlocks: v.counters.published.Load(), SkippedSegments: v.counters.skipped.Load(),
		Rebuilds:     v.counters.rebuilds.Load(),
		LastError:    deref(v.counters.lastErr.Load()),
		PartsServed:  v.Tree.Source() != tree.Source(tree.LogSource{Log: v.Meta}) && v.lazy,
		PartsFetched: fetched, PartsResident: resident, PartsBuilt: v.counters.partsBuilt.Load(),
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Close releases the metadata log and removes its directory if it was
// temporary. It does not publish.
func (v *Volume) Close() error {
	var err error
	if v.Meta != nil {
		err = v.Meta.Close()
	}
	v.mu.Lock()
	v.retireAll()
	v.mu.Unlock()
	if v.pcache != nil {
		v.pcache.Close()
	}
	if v.borrowed {
		// The store is the volume's OpenAt was called on, closed with it.
	} else if cerr := v.store.Close(); err == nil {
		err = cerr
	}
	v.cleanup()
	return err
}

func (v *Volume) cleanup() {
	if v.ownsDir {
		os.RemoveAll(v.metaDir)
	}
}
