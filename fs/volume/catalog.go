package volume

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"blockfs/blockstore"
	"blockfs/fs/tree"
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

// Manifest lists the published metadata segments of a store.
type Manifest struct {
	Format     int          `json:"format"`
	Generation uint64       `json:"generation"`  // bumped by every publish
	MaxVersion uint64       `json:"max_version"` // highest object version published
	Segments   []SegmentRef `json:"segments"`
}

// SegmentRef is one published segment.
type SegmentRef struct {
	ID     string               `json:"id"` // unique: "<import id>-<local segment id>"
	Size   int64                `json:"size"`
	Blocks []blockstore.Locator `json:"blocks"`
}

const manifestFormat = 1

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

// load returns the current manifest and the ref version it was read at
// ("" and an empty manifest for a store nothing was published to yet).
func (c *catalog) load(ctx context.Context) (Manifest, string, error) {
	raw, version, err := c.refs.GetRef(ctx, headRef)
	if errors.Is(err, blockstore.ErrNotFound) {
		return Manifest{Format: manifestFormat}, "", nil
	}
	if err != nil {
		return Manifest{}, "", fmt.Errorf("reading metadata ref: %w", err)
	}
	m, err := c.decode(ctx, raw)
	return m, version, err
}

func (c *catalog) decode(ctx context.Context, raw []byte) (Manifest, error) {
	locs, err := parseRef(raw)
	if err != nil {
		return Manifest{}, err
	}
	data, err := c.getBlob(ctx, locs)
	if err != nil {
		return Manifest{}, fmt.Errorf("reading manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %w", tree.ErrBadNode, err)
	}
	if m.Format != manifestFormat {
		return Manifest{}, fmt.Errorf("%w: manifest format %d", tree.ErrBadNode, m.Format)
	}
	return m, nil
}

// parseRef reads the value of the head ref: the header line, then the
// manifest's block locators, one per line, adding up to at most maxManifest
// bytes (the ref comes from the store, so it is checked like any input).
func parseRef(raw []byte) ([]blockstore.Locator, error) {
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if lines[0] != refHeader {
		return nil, fmt.Errorf("%w: metadata ref does not start with %q", tree.ErrBadNode, refHeader)
	}
	var locs []blockstore.Locator
	var total int64
	for _, l := range lines[1:] {
		loc, err := blockstore.ParseLocator(l)
		if err != nil {
			return nil, fmt.Errorf("%w: metadata ref: %w", tree.ErrBadNode, err)
		}
		if total += loc.Size; total > maxManifest {
			return nil, fmt.Errorf("%w: metadata ref: manifest over %d bytes", tree.ErrBadNode, maxManifest)
		}
		locs = append(locs, loc)
	}
	if len(locs) == 0 {
		return nil, fmt.Errorf("%w: metadata ref names no blocks", tree.ErrBadNode)
	}
	return locs, nil
}

// maxManifest bounds the manifest a ref may name (memory for getBlob).
const maxManifest = 1 << 30

// update applies fn to the current manifest and publishes the result with
// compare-and-swap, retrying with jittered backoff while other publishers
// win the race. fn must be idempotent: it may run several times.
func (c *catalog) update(ctx context.Context, fn func(*Manifest)) (Manifest, []blockstore.Locator, error) {
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		m, version, err := c.load(ctx)
		if err != nil {
			return m, nil, err
		}
		fn(&m)
		m.Generation++
		data, err := json.Marshal(m)
		if err != nil {
			return m, nil, err
		}
		locs, err := c.putBlob(ctx, data)
		if err != nil {
			return m, nil, fmt.Errorf("writing manifest: %w", err)
		}
		var ref bytes.Buffer
		ref.WriteString(refHeader + "\n")
		for _, l := range locs {
			ref.WriteString(l.String() + "\n")
		}
		_, err = c.refs.PutRef(ctx, headRef, ref.Bytes(), version)
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

// getBlob reads and verifies the blocks of a blob: metadata is checked
// against its hashes exactly like file data.
func (c *catalog) getBlob(ctx context.Context, locs []blockstore.Locator) ([]byte, error) {
	var total int64
	for _, l := range locs {
		total += l.Size
	}
	out := make([]byte, total)
	off := int64(0)
	for _, l := range locs {
		if err := blockstore.ReadVerified(ctx, c.blocks, l, out[off:off+l.Size]); err != nil {
			return nil, fmt.Errorf("metadata block: %w", err)
		}
		off += l.Size
	}
	return out, nil
}
