// Package s3 is a blockstore.Store and blockstore.RefStore kept in an S3
// bucket (AWS, MinIO, Ceph RGW, or anything speaking the S3 API).
//
// Layout under the store's prefix:
//
//	<prefix>/blocks/<first 2 hex>/<64 hex>   one object per block
//	<prefix>/refs/<name>                      one object per ref
//
// Every call is a few plain requests with no client-side state beyond
// counters: blocks are immutable and the Pool in front of the store does
// caching, sharing and hash verification.
//
// # Failures and time bounds
//
// Each attempt of a request runs under Config.RequestTimeout. Transient
// failures (network errors, timeouts, HTTP 5xx including 503 SlowDown,
// 429, 408) are retried with exponential backoff and full jitter, up to
// Config.MaxAttempts attempts in all; other answers (404, 403, 412, ...)
// are final at once. minio-go's own retries are switched off, so a call
// that keeps failing returns within
//
//	MaxAttempts × RequestTimeout + (MaxAttempts−1) × RetryMax
//
// (with the defaults 5 × 30 s + 4 × 5 s = 170 s; the backoff sleeps are
// on average much shorter), or as soon as its context ends. List retries
// each page separately, so the bound applies per page.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"blockfs/blockstore"
	"blockfs/blockstore/internal/netstore"
)

// Defaults for zero Config fields (the retry ones are every network
// store's, from blockstore/internal/netstore).
const (
	DefaultEndpoint       = "https://s3.amazonaws.com"
	DefaultRequestTimeout = netstore.DefaultRequestTimeout
	DefaultMaxAttempts    = netstore.DefaultMaxAttempts
	DefaultRetryBase      = netstore.DefaultRetryBase
	DefaultRetryMax       = netstore.DefaultRetryMax
)

// Config says where the bucket is and how hard to try. Zero fields take
// defaults; ConfigFromEnv fills it the way the AWS tools do.
type Config struct {
	// Endpoint is the S3 API URL, e.g. http://127.0.0.1:9000 (no scheme
	// means https). Default: AWS, https://s3.amazonaws.com.
	Endpoint string
	// Region of the bucket. Empty: us-east-1 for non-AWS endpoints; on
	// AWS the client asks the bucket for it (one request, cached).
	Region string
	// AccessKey, SecretKey and SessionToken are static credentials. If
	// AccessKey is empty, the shared credentials file is read (profile
	// Profile, or AWS_PROFILE, or "default"); if that has none, requests
	// are anonymous.
	AccessKey, SecretKey, SessionToken string
	// Profile names a profile in the shared credentials file
	// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials).
	Profile string
	// PathStyle forces path-style addressing (http://host/bucket/key).
	// False means automatic: virtual-host style on AWS (and Google),
	// path-style everywhere else. ConfigFromEnv sets it true unless the
	// endpoint is AWS.
	PathStyle bool
	// RequestTimeout bounds each attempt of each request (default 30s).
	RequestTimeout time.Duration
	// MaxAttempts bounds attempts per request, the first included
	// (default 5; 1 means no retries).
	MaxAttempts int
	// RetryBase and RetryMax shape the backoff before retry n: a uniform
	// random duration in [0, min(RetryMax, RetryBase·2^(n−1))) (defaults
	// 100ms and 5s).
	RetryBase, RetryMax time.Duration
}

// ConfigFromEnv reads AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL),
// AWS_REGION (or AWS_DEFAULT_REGION), AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_PROFILE. PathStyle is
// true unless the endpoint is AWS. Other fields are left zero (defaults).
func ConfigFromEnv() Config {
	c := Config{
		Endpoint:     firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		Region:       firstEnv("AWS_REGION", "AWS_DEFAULT_REGION"),
		AccessKey:    os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey:    os.Getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken: os.Getenv("AWS_SESSION_TOKEN"),
		Profile:      os.Getenv("AWS_PROFILE"),
	}
	c.PathStyle = !IsAWS(c.Endpoint)
	return c
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// IsAWS reports whether endpoint is (or defaults to) Amazon S3: its host
// is amazonaws.com or under it (China regions included). It decides
// virtual-host addressing and whether to ask the bucket for its region.
func IsAWS(endpoint string) bool {
	if endpoint == "" {
		return true
	}
	u, err := parseEndpoint(endpoint)
	if err != nil {
		return false
	}
	h := u.Hostname()
	return h == "amazonaws.com" || strings.HasSuffix(h, ".amazonaws.com") || strings.HasSuffix(h, ".amazonaws.com.cn")
}

func parseEndpoint(endpoint string) (*url.URL, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	return netstore.ParseURL(endpoint, false)
}

// Errors from Open, each naming one thing to fix. Test with errors.Is.
var (
	// ErrUnreachable: no connection to the endpoint (refused, DNS,
	// timeout).
	ErrUnreachable = errors.New("s3 endpoint unreachable")
	// ErrCredentials: the server rejected the credentials
	// (InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied, ...).
	ErrCredentials = errors.New("s3 credentials rejected")
	// ErrNoBucket: the bucket does not exist (NoSuchBucket).
	ErrNoBucket = errors.New("s3 bucket does not exist")
)

// Store is a block store in an S3 bucket. It is safe for concurrent use.
type Store struct {
	core     minio.Core
	bucket   string
	prefix   string // "" or "some/prefix/"
	endpoint string
	retry    netstore.Retry

	c netstore.Counters
}

var (
	_ blockstore.Store        = (*Store)(nil)
	_ blockstore.RefStore     = (*Store)(nil)
	_ blockstore.BatchDeleter = (*Store)(nil)
)

// Open returns the store for bucket under prefix ("" for the bucket's
// root) and checks up front, with one listing request (retried like any
// other), that the endpoint answers, the credentials are accepted and the
// bucket exists. Its error is one line wrapping ErrUnreachable,
// ErrCredentials or ErrNoBucket when one of those is the problem.
func Open(ctx context.Context, bucket, prefix string, cfg Config) (*Store, error) {
	cfg.setDefaults()
	where := fmt.Sprintf("s3: open bucket %q at %s", bucket, cfg.Endpoint)
	u, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("%s: bad endpoint: %v", where, err)
	}
	creds, err := cfg.credentials()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", where, ErrCredentials, err)
	}
	region := cfg.Region
	if region == "" && !IsAWS(cfg.Endpoint) {
		region = "us-east-1"
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        creds,
		Secure:       u.Scheme == "https",
		Region:       region,
		BucketLookup: lookup,
		Transport:    netstore.HTTPTransport(cfg.RequestTimeout, nil),
		MaxRetries:   1, // we retry, with our own bounds
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %v", where, err)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	s := &Store{
		core:     minio.Core{Client: client},
		bucket:   bucket,
		prefix:   prefix,
		endpoint: cfg.Endpoint,
	}
	s.retry = cfg.policy().Retry(&s.c)
	s.retry.Transient, s.retry.Describe = transient, describe
	_, err = s.listPage(ctx, prefix+"blocks/", "", 1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, classifyOpen(err))
	}
	return s, nil
}

func (c *Config) setDefaults() {
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	p := c.policy().WithDefaults()
	c.RequestTimeout, c.MaxAttempts, c.RetryBase, c.RetryMax = p.RequestTimeout, p.MaxAttempts, p.RetryBase, p.RetryMax
}

func (c *Config) policy() netstore.Policy {
	return netstore.Policy{RequestTimeout: c.RequestTimeout, MaxAttempts: c.MaxAttempts, RetryBase: c.RetryBase, RetryMax: c.RetryMax}
}

// credentials picks static keys, else the shared credentials file, else
// anonymous access. (Instance and web-identity roles are not consulted.)
func (c *Config) credentials() (*credentials.Credentials, error) {
	if c.AccessKey != "" || c.SecretKey != "" {
		if c.AccessKey == "" || c.SecretKey == "" {
			return nil, errors.New("access key and secret key must be given together")
		}
		return credentials.NewStaticV4(c.AccessKey, c.SecretKey, c.SessionToken), nil
	}
	profile := c.Profile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	file := credentials.NewFileAWSCredentials("", profile)
	if _, err := file.GetWithContext(nil); err != nil {
		if profile != "" {
			return nil, fmt.Errorf("profile %q: %v", profile, err)
		}
		return credentials.NewStaticV4("", "", ""), nil // anonymous
	}
	return file, nil
}

// classifyOpen maps Open's check failure to a sentinel and a short cause.
func classifyOpen(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchBucket":
			return fmt.Errorf("%w (%s)", ErrNoBucket, describe(err))
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
			"ExpiredToken", "TokenRefreshRequired", "InvalidSecurity", "AuthorizationHeaderMalformed":
			return fmt.Errorf("%w (%s)", ErrCredentials, describe(err))
		}
		if er.StatusCode == http.StatusForbidden {
			return fmt.Errorf("%w (%s)", ErrCredentials, describe(err))
		}
		return errors.New(describe(err))
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w (%s)", ErrUnreachable, describe(err))
}

// describe renders err in one short line (netstore.Describe): an S3 error
// as its code and message.
func describe(err error) string {
	return netstore.Describe(err, func(err error) (string, bool) {
		var er minio.ErrorResponse
		if !errors.As(err, &er) {
			return "", false
		}
		msg := er.Message
		if msg == "" {
			msg = http.StatusText(er.StatusCode)
		}
		return fmt.Sprintf("%s: %s", er.Code, msg), true
	})
}

// Bucket returns the bucket name; Prefix the key prefix ("" or ending in
// "/").
func (s *Store) Bucket() string { return s.bucket }

// Prefix returns the key prefix: "" or ending in "/".
func (s *Store) Prefix() string { return s.prefix }

func (s *Store) blockKey(h blockstore.Hash) string {
	x := h.String()
	return s.prefix + "blocks/" + x[:2] + "/" + x
}

func (s *Store) refKey(name string) string { return s.prefix + "refs/" + name }

// do runs one request under the store's retry policy; kind counts the
// attempts.
func (s *Store) do(ctx context.Context, kind *atomic.Int64, attempt func(ctx context.Context) error) error {
	return s.retry.Do(ctx, kind, attempt)
}

// transient reports whether a failed attempt is worth retrying
// (netstore.Transient): any failure to get an answer (connection refused
// or reset, timeout, short body), and answers that say "later" (5xx, 503
// SlowDown, 429, 408). Definite answers (404, 403, 412, 400, ...) and our
// own verdicts (ErrCorrupt, ErrNotFound, ErrConflict) are final.
func transient(err error) bool { return netstore.Transient(err, transientAnswer) }

func transientAnswer(err error) (retry, ok bool) {
	if netstore.Final(err) {
		return false, true // (checked first: an S3 answer is never wrapped in one)
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "SlowDown", "SlowDownRead", "SlowDownWrite", "RequestTimeout", "InternalError",
			"ServiceUnavailable", "Throttling", "ThrottlingException", "RequestThrottled",
			"RequestLimitExceeded", "XMinioServerNotInitialized":
			return true, true
		}
		return er.StatusCode >= 500 || er.StatusCode == http.StatusTooManyRequests ||
			er.StatusCode == http.StatusRequestTimeout, true
	}
	return false, false
}

func isNotFound(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && (er.Code == "NoSuchKey" || er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket")
}

// fail counts a failed operation and wraps err for the caller.
func (s *Store) fail(op string, err error) error {
	s.c.Errors.Add(1)
	return fmt.Errorf("s3: %s: %w", op, err)
}

// Get implements blockstore.Store: one GET. An object whose size differs
// from loc.Size yields ErrCorrupt (not retried: those bytes are wrong).
func (s *Store) Get(ctx context.Context, loc blockstore.Locator, dst []byte) (int, error) {
	if err := loc.Check(); err != nil {
		return 0, fmt.Errorf("s3: get: %w", err)
	}
	if int64(len(dst)) < loc.Size {
		return 0, fmt.Errorf("s3: get %v: %w: buffer of %d bytes", loc, io.ErrShortBuffer, len(dst))
	}
	key := s.blockKey(loc.Hash)
	var n int
	err := s.do(ctx, &s.c.Gets, func(ctx context.Context) error {
		n = 0
		body, info, _, err := s.core.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		if info.Size != loc.Size {
			return fmt.Errorf("%w: s3 get %v: object has %d bytes", blockstore.ErrCorrupt, loc, info.Size)
		}
		n, err = io.ReadFull(body, dst[:loc.Size])
		s.c.BytesIn.Add(int64(n))
		if err != nil {
			return fmt.Errorf("reading body after %d of %d bytes: %w", n, loc.Size, err)
		}
		return nil
	})
	switch {
	case err == nil:
		return n, nil
	case isNotFound(err):
		return 0, fmt.Errorf("%w: s3 get %v", blockstore.ErrNotFound, loc)
	case errors.Is(err, blockstore.ErrCorrupt):
		s.c.Errors.Add(1)
		return 0, err
	}
	return 0, s.fail(fmt.Sprintf("get %v", loc), err)
}

// Put implements blockstore.Store: it verifies the hash, skips a block
// that exists with the right size (one HEAD), and otherwise uploads it in
// one PUT with Content-Length and x-amz-content-sha256 set to h, so the
// server too checks the bytes it receives.
func (s *Store) Put(ctx context.Context, h blockstore.Hash, data []byte) error {
	if err := blockstore.CheckPut(h, data); err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	size, err := s.stat(ctx, s.blockKey(h))
	if err == nil && size == int64(len(data)) {
		return nil
	}
	if err != nil && !isNotFound(err) {
		return s.fail(fmt.Sprintf("put %v", h), err)
	}
	return s.PutHashed(ctx, h, data)
}

// PutHashed implements blockstore.HashedPutter: Put without re-hashing data
// here (the server still checks it against x-amz-content-sha256) and
// without the HEAD that asks whether it exists.
func (s *Store) PutHashed(ctx context.Context, h blockstore.Hash, data []byte) error {
	if len(data) > blockstore.MaxBlockSize {
		return fmt.Errorf("%w: s3 put %v: %d bytes", blockstore.ErrTooLarge, h, len(data))
	}
	err := s.do(ctx, &s.c.Puts, func(ctx context.Context) error {
		// The block's name is the SHA-256 of its bytes, so it goes as the
		// signed x-amz-content-sha256 the server checks the body against.
		// DisableContentSha256 keeps minio-go, over plain http, from the
		// streaming signature instead, which hashes every byte a second
		// time on our side (per 64 KiB chunk) for the same check.
		_, err := s.core.PutObject(ctx, s.bucket, s.blockKey(h), bytes.NewReader(data), int64(len(data)),
			"", h.String(), minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true})
		if err == nil {
			s.c.BytesOut.Add(int64(len(data)))
		}
		return err
	})
	if err != nil {
		return s.fail(fmt.Sprintf("put %v", h), err)
	}
	return nil
}

// stat HEADs key and returns its size.
func (s *Store) stat(ctx context.Context, key string) (int64, error) {
	var size int64
	err := s.do(ctx, &s.c.Heads, func(ctx context.Context) error {
		info, err := s.core.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
		size = info.Size
		return err
	})
	return size, err
}

// Has implements blockstore.Store: one HEAD.
func (s *Store) Has(ctx context.Context, h blockstore.Hash) (bool, error) {
	_, err := s.stat(ctx, s.blockKey(h))
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, s.fail(fmt.Sprintf("has %v", h), err)
}

// listPage lists up to max keys under prefix after the key after, in one
// ListObjectsV2 request (retried like any other).
func (s *Store) listPage(ctx context.Context, prefix, after string, max int) ([]minio.ObjectInfo, error) {
	var page []minio.ObjectInfo
	noOwner := false
	err := s.do(ctx, &s.c.Lists, func(ctx context.Context) error {
		page = page[:0]
		opts := minio.ListObjectsOptions{Prefix: prefix, Recursive: true, StartAfter: after, MaxKeys: max, FetchOwner: &noOwner}
		// The iterator fetches the next page only when asked for more
		// than this one holds; stopping at max keeps it to one request.
		for o := range s.core.ListObjectsIter(ctx, s.bucket, opts) {
			if o.Err != nil {
				return o.Err
			}
			page = append(page, o)
			if len(page) == max {
				break
			}
		}
		return nil
	})
	return page, err
}

// Delete implements blockstore.Store: a HEAD (S3 deletes of missing keys
// succeed silently, and the interface wants ErrNotFound), then a DELETE.
func (s *Store) Delete(ctx context.Context, h blockstore.Hash) error {
	key := s.blockKey(h)
	if _, err := s.stat(ctx, key); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%w: s3 delete %v", blockstore.ErrNotFound, h)
		}
		return s.fail(fmt.Sprintf("delete %v", h), err)
	}
	err := s.do(ctx, &s.c.Deletes, func(ctx context.Context) error {
		return s.core.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	})
	if err != nil {
		return s.fail(fmt.Sprintf("delete %v", h), err)
	}
	return nil
}

// deleteBatchSize is the number of keys one DeleteObjects request takes
// (S3's maximum).
const deleteBatchSize = 1000

// DeleteBatch implements blockstore.BatchDeleter with DeleteObjects, at
// most deleteBatchSize keys a request, each request retried on its own
// (deleting a key twice is harmless). S3 reports missing keys as deleted,
// which is what a collector rerun wants.
func (s *Store) DeleteBatch(ctx context.Context, hs []blockstore.Hash) error {
	for i := 0; i < len(hs); i += deleteBatchSize {
		part := hs[i:min(i+deleteBatchSize, len(hs))]
		if err := s.do(ctx, &s.c.Deletes, func(ctx context.Context) error { return s.removeObjects(ctx, part) }); err != nil {
			return s.fail(fmt.Sprintf("delete %d blocks", len(part)), err)
		}
	}
	return nil
}

// removeObjects deletes part (at most deleteBatchSize keys: one request)
// and returns the first per-key error.
func (s *Store) removeObjects(ctx context.Context, part []blockstore.Hash) error {
	objs := make(chan minio.ObjectInfo, len(part))
	for _, h := range part {
		objs <- minio.ObjectInfo{Key: s.blockKey(h)}
	}
	close(objs)
	var first error
	for e := range s.core.RemoveObjects(ctx, s.bucket, objs, minio.RemoveObjectsOptions{}) {
		if first == nil && e.Err != nil {
			first = fmt.Errorf("%s: %w", e.ObjectName, e.Err)
		}
	}
	return first
}
