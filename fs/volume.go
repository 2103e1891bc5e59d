package fs

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/diskcache"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/s3"
	"blockfs/objects"
)

// ErrNoStore is wrapped by errors for store strings that name nothing usable.
var ErrNoStore = errors.New("no blockfs store")

// A local store directory holds a marker file and the block store:
//
//	STORE/blockfs-store   format marker, so a typo cannot mount /etc
//	STORE/blocks/         blockstore.DirStore: blocks, refs/ (the catalog), tmp/
const (
	markerName    = "blockfs-store"
	markerContent = "blockfs store format 2\n"
)

// Volume is an opened store: its blocks and, in a private local log, the
// metadata published to it (see catalog.go).
type Volume struct {
	Spec   string // the store string it was opened from
	Blocks blockstore.Store
	Meta   *objects.Log
	Tree   *Tree

	store    *Store
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
	LastRefreshNs int64  `json:"last_refresh_unix_ns"`
	// PublishedBlocks counts the metadata blocks (segments and the
	// manifests that made it into the ref) this process published.
	PublishedBlocks int64 `json:"published_blocks"`
}

type metaCounters struct {
	generation, segments, refreshes, changes, errors, last, published atomic.Int64
}

// OpenOptions say how a Volume is opened.
type OpenOptions struct {
	Create bool // create the store if it does not exist (import)
	// MetaDir holds the private metadata log; "" means a temporary
	// directory that Close removes.
	MetaDir string
	// S3 configures s3:// stores; nil reads the usual AWS environment
	// variables (s3.ConfigFromEnv).
	S3 *s3.Config
	// CacheDir, if set, keeps verified blocks on local disk (at most
	// CacheSize bytes) in front of the store, across restarts.
	CacheDir  string
	CacheSize int64
	// Token authenticates to an http(s):// store (blockfs serve); CAFile
	// names extra PEM roots to trust for https.
	Token, CAFile string
	// WrapBackend, if set, wraps the store before the cache (metrics).
	WrapBackend func(blockstore.Store) blockstore.Store
}

// Open opens the store named by spec and ingests its published metadata.
// It is the single place where store strings are parsed: a local directory
// path (or file:// URL) today.
func Open(ctx context.Context, spec string, opts OpenOptions) (*Volume, error) {
	store, err := OpenStore(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	refs, ok := store.Backend.(blockstore.RefStore)
	if !ok {
		store.Close()
		return nil, fmt.Errorf("store %s: %w", spec, ErrNoRefs)
	}
	v := &Volume{
		Spec: spec, Blocks: store.Blocks, store: store, cat: catalog{blocks: store.Blocks, refs: refs, flush: flusherOf(store.Backend)},
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
	v.Tree = NewTree(v.Meta)
	if _, err := v.Refresh(ctx); err != nil {
		v.Close()
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	return v, nil
}

// ClientTLS is the TLS configuration of a client of https:// stores: the
// system roots, plus the PEM certificates in caFile if given (nil, nil
// when it is "").
func ClientTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificates in %s", caFile)
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}

// Store is an opened block store: the backend the store string names and,
// with a cache directory, the disk cache in front of it.
type Store struct {
	Blocks  blockstore.Store // what to read through: the cache if any, else the backend
	Backend blockstore.Store
	Cache   *diskcache.Cache // nil without --cache-dir
}

// OpenStore opens the block store named by spec, behind a disk cache when
// opts.CacheDir is set. Mount, import and serve all open stores here.
func OpenStore(ctx context.Context, spec string, opts OpenOptions) (*Store, error) {
	backend, err := openStore(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	if d, ok := backend.(*blockstore.DirStore); ok && opts.Create {
		// An import: one sync per publish instead of one per block (see
		// DirStore.DeferSync); the catalog flushes before it points at blocks.
		d.DeferSync()
	}
	st := &Store{Blocks: backend, Backend: backend}
	if opts.WrapBackend != nil {
		st.Blocks = opts.WrapBackend(backend)
	}
	if opts.CacheDir != "" {
		if opts.CacheSize <= 0 {
			return nil, fmt.Errorf("cache %s: a cache size is needed", opts.CacheDir)
		}
		c, err := diskcache.Open(opts.CacheDir, st.Blocks, diskcache.Options{MaxBytes: opts.CacheSize})
		if err != nil {
			return nil, err
		}
		st.Blocks, st.Cache = c, c
	}
	return st, nil
}

// flusherOf returns how to make a store's writes durable (a no-op for
// stores whose Put already is).
func flusherOf(s blockstore.Store) func(context.Context) error {
	if f, ok := s.(blockstore.Flusher); ok {
		return f.Flush
	}
	return func(context.Context) error { return nil }
}

// Close releases the cache directory, if any.
func (s *Store) Close() error {
	if s.Cache != nil {
		return s.Cache.Close()
	}
	return nil
}

// BackendStats returns the request counters of backends that keep them
// (S3, HTTP), for stats; nil otherwise.
func (s *Store) BackendStats() any {
	switch b := s.Backend.(type) {
	case *s3.Store:
		return b.Stats()
	case *httpstore.Client:
		return b.Stats()
	}
	return nil
}

// openStore parses a store string into a block store:
//
//	/path/to/store, file:///path   a local directory
//	s3://BUCKET[/PREFIX]           S3-compatible object storage
//	http(s)://HOST:PORT            a blockfs serve
func openStore(ctx context.Context, spec string, opts OpenOptions) (blockstore.Store, error) {
	if spec == "" {
		return nil, fmt.Errorf("%w: no store given (use --store or BLOCKFS_STORE)", ErrNoStore)
	}
	scheme, rest, hasScheme := strings.Cut(spec, "://")
	if !hasScheme {
		return openDir(spec, spec, opts.Create)
	}
	switch scheme {
	case "file":
		return openDir(spec, rest, opts.Create)
	case "s3":
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return nil, fmt.Errorf("store %s: %w: no bucket (want s3://BUCKET/PREFIX)", spec, ErrNoStore)
		}
		cfg := s3.ConfigFromEnv()
		if opts.S3 != nil {
			cfg = *opts.S3
		}
		st, err := s3.Open(ctx, bucket, prefix, cfg)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", spec, err)
		}
		return st, nil
	case "http", "https":
		tc, err := ClientTLS(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", spec, err)
		}
		c, err := httpstore.Open(ctx, spec, httpstore.ClientOptions{Token: opts.Token, TLS: tc})
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", spec, err)
		}
		return c, nil
	default:
		return nil, fmt.Errorf("store %s: %w: unsupported scheme %q (want a directory, s3://BUCKET/PREFIX or http://HOST:PORT)", spec, ErrNoStore, scheme)
	}
}

func openDir(spec, dir string, create bool) (blockstore.Store, error) {
	dir = filepath.Clean(dir)
	marker := filepath.Join(dir, markerName)
	b, err := os.ReadFile(marker)
	switch {
	case err == nil:
		if string(b) != markerContent {
			return nil, fmt.Errorf("store %s: %w: unknown format in %s", spec, ErrNoStore, marker)
		}
	case errors.Is(err, fs.ErrNotExist) && create:
		if err := createDir(dir, marker); err != nil {
			return nil, fmt.Errorf("store %s: %w", spec, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Stat(dir); serr != nil {
			return nil, fmt.Errorf("store %s: %w: %w", spec, ErrNoStore, serr)
		}
		return nil, fmt.Errorf("store %s: %w: %s is not a blockfs store (no %s)", spec, ErrNoStore, dir, markerName)
	default:
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	blocks, err := blockstore.OpenDir(filepath.Join(dir, "blocks"), create)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	return blocks, nil
}

// createDir lays out a new store; the marker is written last so that a
// half-created store is not taken for a store.
func createDir(dir, marker string) error {
	if err := os.MkdirAll(filepath.Join(dir, "blocks"), 0o755); err != nil {
		return err
	}
	// A unique temp name: two imports may create the same store at once.
	f, err := os.CreateTemp(dir, markerName+".tmp-*")
	if err != nil {
		return err
	}
	_, werr := f.WriteString(markerContent)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), marker)
	}
	if werr != nil {
		os.Remove(f.Name())
	}
	return werr
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
	} else {
		v.counters.last.Store(time.Now().UnixNano())
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

// MetaStats snapshots the metadata counters.
func (v *Volume) MetaStats() MetaStats {
	return MetaStats{
		Generation: uint64(v.counters.generation.Load()), Segments: v.counters.segments.Load(),
		Refreshes: v.counters.refreshes.Load(), Changes: v.counters.changes.Load(),
		RefreshErrors: v.counters.errors.Load(), LastRefreshNs: v.counters.last.Load(),
		PublishedBlocks: v.counters.published.Load(),
	}
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
