package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/minio/minio-go/v7"

	"blockfs/blockstore"
)

// Refs are objects <prefix>/refs/<name>; a ref's version is its ETag.
//
// PutRef is a conditional PUT: If-None-Match: * to create, If-Match:
// <etag> to replace. The server refuses with 412 Precondition Failed (or,
// on AWS, 409 ConditionalRequestConflict when two conditional writes race)
// and PutRef returns blockstore.ErrConflict. This needs a server that
// honours conditional writes: AWS S3 (since 2024), and MinIO (the pinned
// release does; the tests check it). A server that ignores If-Match /
// If-None-Match on PUT (older Ceph RGW and MinIO releases, some other
// S3 clones) would let a stale writer win silently: do not use refs there.
//
// A PUT whose outcome is unknown (the connection dropped or timed out
// after the request left) is retried like any transient failure, but the
// retry's 412 may then be our own earlier write. Each PutRef therefore
// tags its object with a random writer id (metadata x-amz-meta-blockfs-writer)
// and, after an ambiguous attempt, a 412 is resolved with a HEAD: our id
// means the write happened (success, that version); anything else is a
// genuine conflict.

const writerMeta = "Blockfs-Writer" // x-amz-meta-blockfs-writer

// GetRef implements blockstore.RefStore: one GET.
func (s *Store) GetRef(ctx context.Context, name string) ([]byte, string, error) {
	if err := blockstore.CheckRefName(name); err != nil {
		return nil, "", err
	}
	var data []byte
	var version string
	err := s.do(ctx, &s.c.Gets, func(ctx context.Context) error {
		body, info, _, err := s.core.GetObject(ctx, s.bucket, s.refKey(name), minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		if info.Size > blockstore.MaxRefSize {
			return fmt.Errorf("%w: s3 ref %s: %d bytes", blockstore.ErrTooLarge, name, info.Size)
		}
		data, err = io.ReadAll(io.LimitReader(body, blockstore.MaxRefSize+1))
		s.c.BytesIn.Add(int64(len(data)))
		if err != nil {
			return fmt.Errorf("reading ref body: %w", err)
		}
		if int64(len(data)) != info.Size {
			return fmt.Errorf("reading ref body: %d bytes, expected %d: %w", len(data), info.Size, io.ErrUnexpectedEOF)
		}
		version = info.ETag
		return nil
	})
	switch {
	case err == nil:
		return data, version, nil
	case isNotFound(err):
		return nil, "", fmt.Errorf("%w: s3 ref %s", blockstore.ErrNotFound, name)
	}
	return nil, "", s.fail("get ref "+name, err)
}

// PutRef implements blockstore.RefStore with a conditional PUT (see
// above). The returned version is the new ETag.
func (s *Store) PutRef(ctx context.Context, name string, data []byte, ifVersion string) (string, error) {
	if err := blockstore.CheckRefName(name); err != nil {
		return "", err
	}
	if len(data) > blockstore.MaxRefSize {
		return "", fmt.Errorf("%w: s3 ref %s: %d bytes", blockstore.ErrTooLarge, name, len(data))
	}
	key := s.refKey(name)
	var id [16]byte
	rand.Read(id[:])
	writer := hex.EncodeToString(id[:])
	opts := minio.PutObjectOptions{
		ContentType:  "application/octet-stream",
		UserMetadata: map[string]string{writerMeta: writer},
	}
	if ifVersion == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifVersion)
	}
	var version string
	ambiguous := false // an earlier attempt may have written
	err := s.do(ctx, &s.c.Puts, func(ctx context.Context) error {
		info, err := s.core.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), "", "", opts)
		if err == nil {
			s.c.BytesOut.Add(int64(len(data)))
			version = info.ETag
			return nil
		}
		if !isConflict(err, ifVersion) {
			if transient(err) {
				ambiguous = true
			}
			return err
		}
		if ambiguous {
			// Was it us? One HEAD, part of this attempt.
			s.c.Heads.Add(1)
			st, herr := s.core.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
			if herr == nil && st.Metadata.Get("X-Amz-Meta-"+writerMeta) == writer {
				version = st.ETag
				return nil
			}
			if herr != nil && !isNotFound(herr) {
				return herr // unknown yet: retry (transient) or fail
			}
		}
		return fmt.Errorf("%w: s3 ref %s: %s", blockstore.ErrConflict, name, conflictReason(err, ifVersion))
	})
	if err != nil {
		if errors.Is(err, blockstore.ErrConflict) {
			return "", err
		}
		return "", s.fail("put ref "+name, err)
	}
	return version, nil
}

// isConflict reports whether a conditional PUT was refused because the
// ref is not at the expected version: 412, AWS's 409 for racing
// conditional writes, or (If-Match on a ref that is gone) 404.
func isConflict(err error, ifVersion string) bool {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return false
	}
	switch {
	case er.StatusCode == http.StatusPreconditionFailed, er.Code == "PreconditionFailed":
		return true
	case er.StatusCode == http.StatusConflict && er.Code == "ConditionalRequestConflict":
		return true
	case ifVersion != "" && isNotFound(err):
		return true
	}
	return false
}

func conflictReason(err error, ifVersion string) string {
	switch {
	case ifVersion == "":
		return "exists"
	case isNotFound(err):
		return fmt.Sprintf("gone (wanted version %s)", ifVersion)
	}
	return fmt.Sprintf("not at version %s", ifVersion)
}
