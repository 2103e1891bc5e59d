package volume

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/parts"
	"blockfs/objects"
)

// The catalog is how metadata lives in the store itself, for every kind of
// store, so that a node with nothing but a store string can mount:
//
//   - Each import writes its metadata into a private objects.Log, seals its
//     segments and uploads them as ordinary blocks (content-addressed, so
//     they are verified like file data).
//   - A manifest lists every published segment by its blocks. The manifest
//     is itself stored as blocks, and the ref "meta/head" names them.
//   - Publishing appends to the manifest with compare-and-swap on the ref
//     (S3 conditional writes, a lock file in a directory): two imports on
//     two machines both land; the loser of a race re-reads and retries.
//   - Mounts (and imports) ingest the segments they have not seen into
//     their own private log; object versions, not segment order, decide
//     which version of a path wins.
//
// See docs/metadata.md.
const headRef = "meta/head"

// metaChunk bounds the blocks segments and manifests are cut into.
const metaChunk = 4 << 20

// Manifest lists the published metadata segments of a store, and the
// history of snapshots that led to it (snapshot.go).
type Manifest struct {
	Format     int    `json:"format"`
	Generation uint64 `json:"generation"` // bumped by every publish: the snapshot number
	// MaxVersion is the highest object version published. It is a record
	// for operators only: versions are issued from what the private log
	// ingested (and Ingest checked), never from this field, so a lying
	// manifest cannot push the version space to its end.
	MaxVersion uint64       `json:"max_version"`
	Segments   []SegmentRef `json:"segments"`
	// Snapshot describes the publish that made this manifest; History the
	// snapshots before it, oldest first, each with its manifest's blocks.
	// Both are absent in manifests written before snapshots existed: such a
	// manifest is snapshot Generation with no parent.
	Snapshot *Snapshot  `json:"snapshot,omitempty"`
	History  []Snapshot `json:"history,omitempty"`
	// Parts, when present, names the root of the snapshot's metadata split
	// into parts (fs/parts), which a lazy reader (a mount) fetches on
	// demand instead of ingesting Segments. It holds exactly what
	// ingesting Segments gives. Absent in manifests written before parts
	// (and when a writer could not build them): readers ingest Segments,
	// which every manifest still lists.
	Parts *PartsRef `json:"parts,omitempty"`
}

// PartsRef is a manifest's part tree: its format and root part.
type PartsRef struct {
	Format int `json:"format"`
	parts.Ref
}

// usableParts reports whether m's parts can be read by this blockfs: a
// part format it does not know, or a root ref that does not check, is
// ignored (the segments serve), never an error.
func (m *Manifest) usableParts() bool {
	return m.Parts != nil && m.Parts.Format == parts.Format && m.Parts.Check() == nil
}

// SegmentRef is one published segment.
type SegmentRef struct {
	ID     string               `json:"id"` // unique: "<import id>-<local segment id>"
	Size   int64                `json:"size"`
	Blocks []blockstore.Locator `json:"blocks"`
}

const manifestFormat = 1

// ErrBadManifest is wrapped by every error for a head ref, manifest or tag
// list read from the store that does not make sense: the store's catalog is
// damaged or crafted (see docs/operations.md for what to do).
var ErrBadManifest = errors.New("malformed metadata catalog")

// ErrNoRefs is returned for stores that cannot hold the catalog.
var ErrNoRefs = errors.New("store cannot hold metadata refs")

// catalog reads and updates a store's manifest.
type catalog struct {
	blocks blockstore.Store
	refs   blockstore.RefStore
	// flush makes every block written so far durable; putBlob calls it, so
	// that no segment or manifest (and no ref) points at blocks a crash
	// could lose.
	flush func(context.Context) error
}

// flusherOf returns how to make a store's writes durable (a no-op for
// stores whose Put already is), found through any wrappers.
func flusherOf(s blockstore.Store) func(context.Context) error {
	if f, ok := blockstore.As[blockstore.Flusher](s); ok {
		return f.Flush
	}
	return func(context.Context) error { return nil }
}

// refHeader starts the value of the head ref: the manifest's block
// locators follow, one per line.
const refHeader = "blockfs-manifest 1"

// head is the catalog as one read of the head ref found it.
type head struct {
	m       Manifest
	version string               // the ref's version ("" if nothing was published)
	locs    []blockstore.Locator // the manifest's blocks (nil if nothing was published)
	damage  error                // loadLenient: why the segment list does not check
}

// load returns the current manifest, the ref version it was read at and its
// blocks (an empty manifest for a store nothing was published to yet).
func (c *catalog) load(ctx context.Context) (head, error) {
	h, err := c.loadLenient(ctx)
	if err == nil && h.damage != nil {
		err = h.damage
	}
	return h, err
}

// loadLenient is load for rollback and repair, which replace the head's
// segments wholesale: a manifest whose history reads but whose segment list
// does not check is returned with the error in damage, so that it can be
// replaced.
func (c *catalog) loadLenient(ctx context.Context) (head, error) {
	raw, version, err := c.refs.GetRef(ctx, headRef)
	if errors.Is(err, blockstore.ErrNotFound) {
		return head{m: Manifest{Format: manifestFormat}}, nil
	}
	if err != nil {
		return head{}, fmt.Errorf("reading metadata ref: %w", err)
	}
	locs, err := parseRef(raw)
	if err != nil {
		return head{version: version}, err
	}
	m, err := c.decodeManifest(ctx, locs)
	if err != nil {
		// The ref's version and locators, for a repair that replaces it.
		return head{version: version, locs: locs}, err
	}
	h := head{m: m, version: version, locs: locs}
	if err := m.checkSegments(); err != nil {
		h.damage = err
	}
	return h, nil
}

// readManifest reads, verifies and checks the manifest stored in locs.
func (c *catalog) readManifest(ctx context.Context, locs []blockstore.Locator) (Manifest, error) {
	m, err := c.decodeManifest(ctx, locs)
	if err == nil {
		err = m.checkSegments()
	}
	return m, err
}

// decodeManifest reads and verifies the manifest in locs, checking all but
// its segment list.
func (c *catalog) decodeManifest(ctx context.Context, locs []blockstore.Locator) (Manifest, error) {
	data, err := c.getBlob(ctx, locs, maxManifest)
	if err != nil {
		return Manifest{}, fmt.Errorf("reading manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %w", ErrBadManifest, err)
	}
	if err := m.checkHistory(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func badManifest(format string, a ...any) error {
	return fmt.Errorf("%w: manifest: %s", ErrBadManifest, fmt.Sprintf(format, a...))
}

// checkSegments bounds every size and count of a manifest's segment list,
// read from the store, before anything is allocated or fetched from it: a
// crafted manifest must fail its refresh with a clear error, not exhaust
// memory.
func (m *Manifest) checkSegments() error {
	seen := make(map[string]bool, len(m.Segments))
	for _, s := range m.Segments {
		if s.ID == "" || seen[s.ID] {
			return badManifest("segment id %q empty or repeated", s.ID)
		}
		seen[s.ID] = true
		if s.Size <= 0 || s.Size > objects.MaxSegmentSize {
			return badManifest("segment %s of %d bytes (at most %d)", s.ID, s.Size, int64(objects.MaxSegmentSize))
		}
		if err := checkBlocks(s.Blocks, s.Size); err != nil {
			return badManifest("segment %s: %v", s.ID, err)
		}
	}
	return nil
}

// checkHistory checks the rest: format, snapshot and history.
func (m *Manifest) checkHistory() error {
	if m.Format != manifestFormat {
		return badManifest("format %d (this blockfs reads format %d)", m.Format, manifestFormat)
	}
	if s := m.Snapshot; s != nil && s.Generation != m.Generation {
		return badManifest("snapshot %d in a manifest of generation %d", s.Generation, m.Generation)
	}
	prev := uint64(0)
	for i, s := range m.History {
		if (i > 0 && s.Generation <= prev) || s.Generation >= m.Generation {
			return badManifest("history out of order at snapshot %d", s.Generation)
		}
		prev = s.Generation
		if err := checkBlocks(s.Manifest, -1); err != nil {
			return badManifest("snapshot %d: %v", s.Generation, err)
		}
	}
	return nil
}

// checkBlocks checks that locs add up to want bytes (or, with want < 0, to
// at most maxManifest), without overflow: each locator is at most
// MaxBlockSize (ParseLocator), and the sum stops at the first excess.
func checkBlocks(locs []blockstore.Locator, want int64) error {
	limit := want
	if want < 0 {
		limit = maxManifest
	}
	var total int64
	for _, l := range locs {
		if total += l.Size; total > limit {
			return fmt.Errorf("blocks add up to more than %d bytes", limit)
		}
	}
	if len(locs) == 0 || (want >= 0 && total != want) {
		return fmt.Errorf("%d blocks of %d bytes, want %d bytes", len(locs), total, want)
	}
	return nil
}

// parseRef reads the value of the head ref: the header line, then the
// manifest's block locators, one per line, adding up to at most maxManifest
// bytes (the ref comes from the store, so it is checked like any input).
func parseRef(raw []byte) ([]blockstore.Locator, error) {
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if lines[0] != refHeader {
		return nil, fmt.Errorf("%w: metadata ref does not start with %q", ErrBadManifest, refHeader)
	}
	var locs []blockstore.Locator
	var total int64
	for _, l := range lines[1:] {
		loc, err := blockstore.ParseLocator(l)
		if err != nil {
			return nil, fmt.Errorf("%w: metadata ref: %w", ErrBadManifest, err)
		}
		if total += loc.Size; total > maxManifest {
			return nil, fmt.Errorf("%w: metadata ref: manifest over %d bytes", ErrBadManifest, maxManifest)
		}
		locs = append(locs, loc)
	}
	if len(locs) == 0 {
		return nil, fmt.Errorf("%w: metadata ref names no blocks", ErrBadManifest)
	}
	return locs, nil
}

// formatRef is the head ref's value naming the manifest in locs.
func formatRef(locs []blockstore.Locator) []byte {
	var ref bytes.Buffer
	ref.WriteString(refHeader + "\n")
	for _, l := range locs {
		ref.WriteString(l.String() + "\n")
	}
	return ref.Bytes()
}

// maxManifest bounds the manifest a ref may name: a store of many thousand
// imports has a manifest of a few MiB, and getBlob allocates only as blocks
// verify, so a crafted ref cannot make a reader allocate what the store
// does not really hold.
const maxManifest = 256 << 20

// update applies fn to the current manifest and publishes the result, as
// the next snapshot described by op, with compare-and-swap, retrying with
// jittered backoff while other publishers win the race. fn must be
// idempotent: it may run several times.
//
// Rollback and repair replace the segment list, so they may replace one
// that does not check; a publish, which adds to it, may not.
func (c *catalog) update(ctx context.Context, op Snapshot, fn func(*Manifest) error) (Manifest, []blockstore.Locator, error) {
	backoff := 10 * time.Millisecond
	load := c.load
	if op.Op == OpRollback || op.Op == OpRepair {
		load = c.loadLenient
	}
	for attempt := 1; ; attempt++ {
		h, err := load(ctx)
		if err != nil {
			return Manifest{}, nil, err
		}
		m := h.m
		m.Segments = slices.Clip(m.Segments)
		// The parts describe the segments: fn sets them again if it can,
		// else the new snapshot has none rather than stale ones.
		m.Parts = nil
		if err := fn(&m); err != nil {
			return Manifest{}, nil, err
		}
		m = successor(h, m, op)
		data, err := json.Marshal(m)
		if err != nil {
			return m, nil, err
		}
		locs, err := c.putBlob(ctx, data)
		if err != nil {
			return m, nil, fmt.Errorf("writing manifest: %w", err)
		}
		_, err = c.refs.PutRef(ctx, headRef, formatRef(locs), h.version)
		if err == nil {
			return m, locs, nil
		}
		if !errors.Is(err, blockstore.ErrConflict) || attempt >= 50 {
			return m, nil, fmt.Errorf("publishing metadata: %w", err)
		}
		select {
		case <-time.After(backoff/2 + rand.N(backoff)):
		case <-ctx.Done():
			return m, nil, ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// replaceHead stores m and points the head ref at it if the ref is still
// at ifVersion ("": if there is none).
func (c *catalog) replaceHead(ctx context.Context, m Manifest, ifVersion string) ([]blockstore.Locator, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	locs, err := c.putBlob(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("writing manifest: %w", err)
	}
	if _, err := c.refs.PutRef(ctx, headRef, formatRef(locs), ifVersion); err != nil {
		return nil, fmt.Errorf("publishing metadata: %w", err)
	}
	return locs, nil
}

// putBlob stores data as blocks of at most metaChunk bytes.
func (c *catalog) putBlob(ctx context.Context, data []byte) ([]blockstore.Locator, error) {
	var locs []blockstore.Locator
	for len(data) > 0 {
		n := min(len(data), metaChunk)
		loc := blockstore.LocatorOf(data[:n])
		if err := c.blocks.Put(ctx, loc.Hash, data[:n]); err != nil {
			return nil, err
		}
		locs = append(locs, loc)
		data = data[n:]
	}
	if err := c.flush(ctx); err != nil {
		return nil, err
	}
	return locs, nil
}

// getBlob reads and verifies the blocks of a blob of at most limit bytes:
// metadata is checked against its hashes exactly like file data. The sizes
// come from the store, so the total is checked before anything is read and
// the buffer grows only as blocks verify: a locator list that lies costs
// at most one block of memory.
func (c *catalog) getBlob(ctx context.Context, locs []blockstore.Locator, limit int64) ([]byte, error) {
	var total int64
	for _, l := range locs {
		if l.Size < 0 || l.Size > blockstore.MaxBlockSize {
			return nil, fmt.Errorf("%w: metadata block %s: bad size", ErrBadManifest, l)
		}
		if total += l.Size; total > limit {
			return nil, fmt.Errorf("%w: metadata blocks add up to more than %d bytes", ErrBadManifest, limit)
		}
	}
	var out []byte
	for _, l := range locs {
		off := len(out)
		out = slices.Grow(out, int(l.Size))[:off+int(l.Size)]
		if err := blockstore.ReadVerified(ctx, c.blocks, l, out[off:]); err != nil {
			return nil, fmt.Errorf("metadata block: %w", err)
		}
	}
	return out, nil
}
