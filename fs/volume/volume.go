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
	"os"
	"sync"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/storeurl"
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

	store    *storeurl.Stack
	cat      catalog
	metaDir  string
	ownsDir  bool
	importID string

	mu        sync.Mutex // one Refresh or Publish at a time
	refVer    string     // ref version last ingested
	ingested  map[string]bool
	published map[uint32]bool // local segments that are in the store already
	counters  metaCounters
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
}

type metaCounters struct {
	generation, segments, refreshes, changes, errors, last, published atomic.Int64
	lastErr                                                           atomic.Pointer[string]
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
	// MetaDir holds the private metadata log; "" means a temporary
	// directory that Close removes.
	MetaDir string
}

// Open opens the store named by spec (see storeurl.Open) and ingests the
// metadata published to it into a private log.
func Open(ctx context.Context, spec string, opts Options) (*Volume, error) {
	store, err := storeurl.Open(ctx, spec, opts.Options)
	if err != nil {
		return nil, err
	}
	refs, ok := blockstore.As[blockstore.RefStore](store.Blocks)
	if !ok {
		store.Close()
		return nil, fmt.Errorf("store %s: %w", spec, ErrNoRefs)
	}
	v := &Volume{
		Spec: spec, Blocks: store.Blocks, store: store, cat: catalog{blocks: store.Blocks, refs: refs, flush: flusherOf(store.Blocks)},
		metaDir: opts.MetaDir, ingested: map[string]bool{}, published: map[uint32]bool{},
	}
	if v.metaDir == "" {
		if v.metaDir, err = os.MkdirTemp("", "blockfs-meta-"); err != nil {
			return nil, err
		}
		v.ownsDir = true
	}
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
	if _, err := v.Refresh(ctx); err != nil {
		v.Close()
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	return v, nil
}

// Refresh ingests the segments published since the last call and reports
// whether there were any.
func (v *Volume) Refresh(ctx context.Context) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.counters.refreshes.Add(1)
	changed, err := v.refreshLocked(ctx)
	if err != nil {
		v.counters.errors.Add(1)
		msg := err.Error()
		v.counters.lastErr.Store(&msg)
	} else {
		v.counters.last.Store(time.Now().UnixNano())
		v.counters.lastErr.Store(nil)
	}
	if changed {
		v.counters.changes.Add(1)
	}
	return changed, err
}

func (v *Volume) refreshLocked(ctx context.Context) (bool, error) {
	m, version, err := v.cat.load(ctx)
	if err != nil || version == v.refVer {
		return false, err
	}
	if have := uint64(v.counters.generation.Load()); m.Generation < have {
		if version == "" {
			return false, fmt.Errorf("%w: the store no longer holds the manifest (generation %d ingested)", ErrGenerationBackwards, have)
		}
		return false, fmt.Errorf("%w: from %d to %d", ErrGenerationBackwards, have, m.Generation)
	}
	changed := false
	for _, s := range m.Segments {
		if v.ingested[s.ID] {
			continue
		}
		data, err := v.cat.getBlob(ctx, s.Blocks)
		if err != nil {
			return changed, fmt.Errorf("metadata segment %s: %w", s.ID, err)
		}
		info, err := v.Meta.Ingest(data)
		if err != nil {
			return changed, fmt.Errorf("metadata segment %s: %w", s.ID, err)
		}
		v.ingested[s.ID] = true
		v.published[info.ID] = true
		v.counters.segments.Add(1)
		changed = true
	}
	v.refVer = version
	v.counters.generation.Store(int64(m.Generation))
	return changed, nil
}

// Publish seals what this process wrote to its log and makes it part of
// the store's metadata: after it returns, a new mount anywhere sees it.
func (v *Volume) Publish(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.Meta.Seal(); err != nil {
		return fmt.Errorf("sealing metadata: %w", err)
	}
	var fresh []SegmentRef
	var local []uint32
	for _, s := range v.Meta.Segments() {
		if !s.Sealed || v.published[s.ID] {
			continue
		}
		data, err := os.ReadFile(s.Path)
		if err != nil {
			return fmt.Errorf("reading metadata segment: %w", err)
		}
		locs, err := v.cat.putBlob(ctx, data)
		if err != nil {
			return fmt.Errorf("storing metadata segment: %w", err)
		}
		fresh = append(fresh, SegmentRef{ID: fmt.Sprintf("%s-%d", v.importID, s.ID), Size: int64(len(data)), Blocks: locs})
		local = append(local, s.ID)
	}
	if len(fresh) == 0 {
		return nil
	}
	maxVersion := v.Meta.MaxVersion()
	m, manifestLocs, err := v.cat.update(ctx, func(m *Manifest) {
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
	})
	if err != nil {
		return err
	}
	published := int64(len(manifestLocs))
	for i, s := range fresh {
		v.ingested[s.ID] = true
		v.published[local[i]] = true
		published += int64(len(s.Blocks))
	}
	v.counters.published.Add(published)
	v.counters.generation.Store(int64(m.Generation))
	return nil
}

// Store is the opened store stack the volume reads through (its disk
// cache, if any, and the backend behind it).
func (v *Volume) Store() *storeurl.Stack { return v.store }

// MetaStats snapshots the metadata counters.
func (v *Volume) MetaStats() MetaStats {
	return MetaStats{
		Generation: uint64(v.counters.generation.Load()), Segments: v.counters.segments.Load(),
		Refreshes: v.counters.refreshes.Load(), Changes: v.counters.changes.Load(),
		RefreshErrors: v.counters.errors.Load(), LastRefreshNs: v.counters.last.Load(),
		PublishedBlocks: v.counters.published.Load(),
		LastError:       deref(v.counters.lastErr.Load()),
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
	if cerr := v.store.Close(); err == nil {
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
