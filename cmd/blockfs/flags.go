package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"blockfs/blockstore/s3"
	"blockfs/blockstore/storeurl"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// sizeValue is a byte count flag that takes humanized sizes: 512MiB, 1G,
// 4096. A bare K, M, G, T, P or E is binary (1G = 1GiB), as GNU tools, rclone
// and fstab option habits read it; KB, MB, GB... are decimal (SI), KiB,
// MiB, GiB... binary.
type sizeValue int64

func (s *sizeValue) String() string { return humanize.IBytes(uint64(*s)) }
func (s *sizeValue) Type() string   { return "size" }
func (s *sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return fmt.Errorf("not a size: %q (want e.g. 256MiB)", v)
	}
	if n > 1<<62 {
		return fmt.Errorf("size %q too large", v)
	}
	*s = sizeValue(n)
	return nil
}

// parseSize reads a size, a bare unit letter meaning binary multiples.
func parseSize(v string) (uint64, error) {
	t := strings.TrimSpace(v)
	if n := len(t); n >= 2 && strings.ContainsRune("kKmMgGtTpPeE", rune(t[n-1])) && (t[n-2] == ' ' || t[n-2] == '.' || (t[n-2] >= '0' && t[n-2] <= '9')) {
		t += "iB"
	}
	return humanize.ParseBytes(t)
}

func sizeFlag(fl *pflag.FlagSet, name string, def int64, usage string) *int64 {
	v := sizeValue(def)
	fl.Var(&v, name, usage)
	return (*int64)(&v)
}

// storeFlags are --store (default $BLOCKFS_STORE) and the S3 settings
// that may override the AWS environment. Keys are deliberately not flags:
// command lines are visible to every user of a node.
type storeFlags struct {
	store, endpoint, region, profile *string
	tokenFile, caFile                *string
	timeout                          *time.Duration
	attempts                         *int
}

func addStoreFlags(fl *pflag.FlagSet) *storeFlags {
	return &storeFlags{
		store:     fl.String("store", os.Getenv("BLOCKFS_STORE"), "the store: a directory or s3://BUCKET/PREFIX (default $BLOCKFS_STORE)"),
		endpoint:  fl.String("s3-endpoint", "", "S3 endpoint URL (default $AWS_ENDPOINT_URL, else AWS)"),
		region:    fl.String("s3-region", "", "S3 region (default $AWS_REGION)"),
		profile:   fl.String("s3-profile", "", "profile in the shared AWS credentials file (default $AWS_PROFILE)"),
		timeout:   fl.Duration("s3-timeout", s3.DefaultRequestTimeout, "timeout of each S3 request attempt"),
		attempts:  fl.Int("s3-attempts", s3.DefaultMaxAttempts, "attempts per S3 request, with backoff between them"),
		tokenFile: fl.String("store-token-file", "", "file holding the bearer token for an http(s):// store (default $BLOCKFS_TOKEN)"),
		caFile:    fl.String("store-ca-file", "", "PEM roots to trust for an https:// store, besides the system's"),
	}
}

// options checks the flags and turns them into storeurl.Options.
func (f *storeFlags) options(create bool) (string, storeurl.Options, error) {
	if *f.store == "" {
		return "", storeurl.Options{}, usagef("no store given: use --store STORE or set BLOCKFS_STORE")
	}
	if err := storeurl.Check(*f.store); err != nil {
		return "", storeurl.Options{}, usagef("%v", err)
	}
	if *f.timeout <= 0 || *f.attempts < 1 {
		return "", storeurl.Options{}, usagef("--s3-timeout must be positive and --s3-attempts at least 1")
	}
	cfg := s3.ConfigFromEnv()
	if *f.endpoint != "" {
		cfg.Endpoint = *f.endpoint
		cfg.PathStyle = !s3.IsAWS(cfg.Endpoint)
	}
	if *f.region != "" {
		cfg.Region = *f.region
	}
	if *f.profile != "" {
		cfg.Profile = *f.profile
	}
	cfg.RequestTimeout, cfg.MaxAttempts = *f.timeout, *f.attempts
	token, err := readToken(*f.tokenFile, os.Getenv("BLOCKFS_TOKEN"))
	if err != nil {
		return "", storeurl.Options{}, err
	}
	return *f.store, storeurl.Options{Create: create, S3: &cfg, Token: token, CAFile: *f.caFile}, nil
}

// readToken reads a bearer token from file (trimmed), or returns def.
func readToken(file, def string) (string, error) {
	if file == "" {
		return def, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return tok, nil
}

// cacheFlags are --cache-dir and --cache-size, for mount and serve.
type cacheFlags struct {
	dir  *string
	size *int64
}

func addCacheFlags(fl *pflag.FlagSet) *cacheFlags {
	return &cacheFlags{
		dir:  fl.String("cache-dir", "", "keep verified blocks in this local directory, across restarts (one process per directory)"),
		size: sizeFlag(fl, "cache-size", 10<<30, "bound on the disk cache"),
	}
}

// openOptions checks the store and cache flags of mount and serve.
func openOptions(sf *storeFlags, cf *cacheFlags) (string, storeurl.Options, error) {
	spec, opts, err := sf.options(false)
	if err == nil {
		err = cf.apply(&opts)
	}
	return spec, opts, err
}

// apply checks the flags and sets them on opts.
func (c *cacheFlags) apply(opts *storeurl.Options) error {
	if *c.dir == "" {
		return nil
	}
	if *c.size < 16<<20 {
		return usagef("--cache-size %s is too small (at least 16MiB)", humanize.IBytes(uint64(*c.size)))
	}
	opts.CacheDir, opts.CacheSize = *c.dir, *c.size
	return nil
}
