// Package storeurl turns store strings (a directory, file://, s3://,
// http(s)://) into opened block stores, behind an optional disk cache. It is
// the one place that parses them, so that mount, import and serve agree on
// what a store string means, and so that serving HTTP does not link the
// filesystem to open a store.
package storeurl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"blockfs/blockstore"
	"blockfs/blockstore/diskcache"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/s3"
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

// Options say how a store is opened.
type Options struct {
	Create bool // create the store if it does not exist (import)
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

// Stack is an opened block store: the backend the store string names and,
// with a cache directory, the disk cache in front of it.
type Stack struct {
	Blocks  blockstore.Store // what to read through: the cache if any, else the backend
	Backend blockstore.Store
	Cache   *diskcache.Cache // nil without --cache-dir
}

// Open opens the block store named by spec, behind a disk cache when
// opts.CacheDir is set. Mount, import and serve all open stores here.
func Open(ctx context.Context, spec string, opts Options) (*Stack, error) {
	backend, err := openBackend(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	if d, ok := backend.(*blockstore.DirStore); ok && opts.Create {
		// An import: one sync per publish instead of one per block (see
		// DirStore.DeferSync); the catalog flushes before it points at blocks.
		d.DeferSync()
	}
	st := &Stack{Blocks: backend, Backend: backend}
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

// Close releases the cache directory, if any, and what the backend holds
// (a directory store's temp session).
func (s *Stack) Close() error {
	var err error
	if s.Cache != nil {
		err = s.Cache.Close()
	}
	if c, ok := s.Backend.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// BackendStats returns the request counters of backends that keep them
// (S3, HTTP), for stats; nil otherwise.
func (s *Stack) BackendStats() any {
	if b, ok := blockstore.As[*s3.Store](s.Blocks); ok {
		return b.Stats()
	}
	if b, ok := blockstore.As[*httpstore.Client](s.Blocks); ok {
		return b.Stats()
	}
	return nil
}

// openBackend parses a store string into a block store:
//
//	/path/to/store, file:///path   a local directory
//	s3://BUCKET[/PREFIX]           S3-compatible object storage
//	http(s)://HOST:PORT            a blockfs serve
func openBackend(ctx context.Context, spec string, opts Options) (blockstore.Store, error) {
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
	if werr == nil {
		// CreateTemp makes it 0600; a store is read by other users too
		// (an unprivileged serve or mount of a store root imported into).
		werr = f.Chmod(0o444)
	}
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
