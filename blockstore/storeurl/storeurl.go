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
	"blockfs/blockstore/limit"
	"blockfs/blockstore/s3"
	"blockfs/blockstore/tier"
)

// ErrNoStore is wrapped by errors for store strings that name nothing usable.
var ErrNoStore = errors.New("no blockfs store")

// A local store directory holds a marker file and the block store:
//
//	STORE/blockfs-store   format marker, so a typo cannot mount /etc
//	STORE/blocks/         blockstore.DirStore: blocks, refs/ (the catalog), tmp/
const (
	markerName    = "blockfs-store"
	markerFormat  = 2
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
	// marked: the store carries the format marker of this blockfs (a
	// legacy S3 store, readable without one, does not).
	marked bool
}

// MarkerRef is the store's format marker as a ref name and value, when it
// carries one: what a serve answers for it (httpstore.ServerOptions
// FixedRefs), so that its clients check the store behind it the same way
// whatever kind it is.
func (s *Stack) MarkerRef() (name string, value []byte, ok bool) {
	if !s.marked {
		return "", nil, false
	}
	return markerName, []byte(markerContent), true
}

// Open opens the block store named by spec, behind a disk cache when
// opts.CacheDir is set. Mount, import and serve all open stores here.
func Open(ctx context.Context, spec string, opts Options) (*Stack, error) {
	backend, marked, err := openBackend(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	if d, ok := backend.(*blockstore.DirStore); ok && opts.Create {
		// An import: one sync per publish instead of one per block (see
		// DirStore.DeferSync); the catalog flushes before it points at blocks.
		d.DeferSync()
	}
	st := &Stack{Blocks: backend, Backend: backend, marked: marked}
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
// open (a directory store's temp session and its lock).
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
	if b, ok := blockstore.As[*tier.Store](s.Blocks); ok {
		return b.Stats()
	}
	return nil
}

// LimitStats returns the counters of the backing-store bound a serve puts
// under its pool (limit.Store), if there is one.
func (s *Stack) LimitStats() (limit.Stats, bool) {
	if l, ok := blockstore.As[*limit.Store](s.Blocks); ok {
		return l.Stats(), true
	}
	return limit.Stats{}, false
}

// openBackend parses a store string into a block store, and reports
// whether it carries the format marker:
//
//	/path/to/store, file:///path   a local directory
//	s3://BUCKET[/PREFIX]           S3-compatible object storage
//	http(s)://HOST:PORT            a blockfs serve
//	http://A:PORT,http://B:PORT    a tier of serves over one store (blockstore/tier)
//
// A serve answers its store's marker as a ref (MarkerRef), so S3, serves
// and tiers are all checked by checkRefMarker: a tier through the first
// healthy member, since every member serves the one store.
func openBackend(ctx context.Context, spec string, opts Options) (blockstore.Store, bool, error) {
	if spec == "" {
		return nil, false, fmt.Errorf("%w: no store given (use --store or BLOCKFS_STORE)", ErrNoStore)
	}
	scheme, rest, hasScheme := strings.Cut(spec, "://")
	if !hasScheme || scheme == "file" {
		if !hasScheme {
			rest = spec
		}
		st, err := openDir(spec, rest, opts.Create)
		return st, err == nil, err
	}
	var st blockstore.Store
	var err error
	switch {
	case (scheme == "http" || scheme == "https") && tier.IsTier(spec):
		st, err = openTier(ctx, spec, opts)
	case scheme == "s3":
		st, err = openS3(ctx, spec, rest, opts)
	case scheme == "http" || scheme == "https":
		st, err = openHTTP(ctx, spec, opts)
	default:
		return nil, false, fmt.Errorf("store %s: %w: unsupported scheme %q (want a directory, s3://BUCKET/PREFIX or http://HOST:PORT)", spec, ErrNoStore, scheme)
	}
	if err != nil {
		return nil, false, err
	}
	refs, ok := st.(blockstore.RefStore)
	if !ok {
		return nil, false, fmt.Errorf("store %s: %w: it keeps no refs", spec, ErrNoStore)
	}
	marked, err := checkRefMarker(ctx, spec, refs, opts.Create)
	if err != nil {
		if c, ok := st.(io.Closer); ok {
			c.Close()
		} else if c, ok := st.(interface{ Close() }); ok {
			c.Close()
		}
		return nil, false, err
	}
	return st, marked, nil
}

func openS3(ctx context.Context, spec, rest string, opts Options) (blockstore.Store, error) {
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
}

func openHTTP(ctx context.Context, spec string, opts Options) (blockstore.Store, error) {
	tc, err := ClientTLS(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	c, err := httpstore.Open(ctx, spec, httpstore.ClientOptions{Token: opts.Token, TLS: tc})
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	return c, nil
}

// An object store has no directory to hold the marker file, so the marker
// is a ref of the same name and content: s3://bucket/typo must fail with
// one clear line, not mount as an empty tree.
//
// legacyRef is the catalog's head ref: S3 stores written before the marker
// existed have it, and stay readable without one.
const legacyRef = "meta/head"

// checkRefMarker checks (or, creating, writes) the marker ref of a store
// without a directory, and reports whether the store carries one.
func checkRefMarker(ctx context.Context, spec string, refs blockstore.RefStore, create bool) (bool, error) {
	b, _, err := refs.GetRef(ctx, markerName)
	switch {
	case err == nil:
		return true, checkMarker(spec, b)
	case !errors.Is(err, blockstore.ErrNotFound):
		return false, fmt.Errorf("store %s: reading the %s marker: %w", spec, markerName, err)
	case create:
		_, err := refs.PutRef(ctx, markerName, []byte(markerContent), "")
		if errors.Is(err, blockstore.ErrConflict) { // another import made it meanwhile
			return checkRefMarker(ctx, spec, refs, false)
		}
		if err != nil {
			return false, fmt.Errorf("store %s: writing the %s marker: %w", spec, markerName, err)
		}
		return true, nil
	}
	if _, _, err := refs.GetRef(ctx, legacyRef); err == nil {
		return false, nil
	}
	return false, fmt.Errorf("%s: %w here (no %s marker); create one with blockfs import", spec, ErrNoStore, markerName)
}

// checkMarker accepts the marker of the format this blockfs reads; a newer
// format is refused rather than misread.
func checkMarker(spec string, b []byte) error {
	if string(b) == markerContent {
		return nil
	}
	var n int
	if _, err := fmt.Sscanf(string(b), "blockfs store format %d\n", &n); err == nil && n > markerFormat {
		return fmt.Errorf("%s: %w this blockfs can read: format %d, written by a newer blockfs (this one reads format %d)", spec, ErrNoStore, n, markerFormat)
	}
	return fmt.Errorf("%s: %w: unknown format in the %s marker", spec, ErrNoStore, markerName)
}

// openTier opens a comma-separated list of serves as one tier; the token
// and CA file apply to every member.
func openTier(ctx context.Context, spec string, opts Options) (blockstore.Store, error) {
	tc, err := ClientTLS(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	t, err := tier.Open(ctx, spec, tier.Options{Client: httpstore.ClientOptions{Token: opts.Token, TLS: tc}})
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	return t, nil
}

func openDir(spec, dir string, create bool) (blockstore.Store, error) {
	dir = filepath.Clean(dir)
	marker := filepath.Join(dir, markerName)
	b, err := os.ReadFile(marker)
	switch {
	case err == nil:
		if err := checkMarker(spec, b); err != nil {
			return nil, err
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

// ErrMalformed is wrapped by Check's errors: the store string itself is
// wrong (a usage mistake), whatever is or is not at the place it names.
var ErrMalformed = fmt.Errorf("%w: malformed store string", ErrNoStore)

// Check reports whether spec is a well-formed store string, without
// opening anything, so that a typo is told apart from a store that cannot
// be reached.
func Check(spec string) error {
	if spec == "" {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	scheme, rest, hasScheme := strings.Cut(spec, "://")
	if !hasScheme {
		return nil
	}
	switch scheme {
	case "file":
		if rest == "" {
			return fmt.Errorf("store %s: %w: no path (want file:///DIR)", spec, ErrMalformed)
		}
	case "s3":
		if bucket, _, _ := strings.Cut(rest, "/"); bucket == "" {
			return fmt.Errorf("store %s: %w: no bucket (want s3://BUCKET/PREFIX)", spec, ErrMalformed)
		}
	case "http", "https":
		if host, _, _ := strings.Cut(rest, "/"); host == "" {
			return fmt.Errorf("store %s: %w: no host (want %s://HOST:PORT)", spec, ErrMalformed, scheme)
		}
	default:
		return fmt.Errorf("store %s: %w: unsupported scheme %q (want a directory, s3://BUCKET/PREFIX or http://HOST:PORT)", spec, ErrMalformed, scheme)
	}
	return nil
}
