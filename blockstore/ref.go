package blockstore

import (
	"context"
	"errors"
	"fmt"
)

// ErrConflict is returned by PutRef when the ref changed since the version
// the caller read: someone else won the race; read again, merge, retry.
var ErrConflict = errors.New("blockstore: ref changed concurrently")

// RefStore is implemented by stores that keep, beside the immutable blocks,
// a few small named values that change: the pointer to the current metadata
// is one. Updates are compare-and-swap, so two writers on two machines
// cannot silently overwrite each other (on S3, conditional writes; in a
// directory, a lock file). Callers find a RefStore with As: wrappers of
// blocks (the disk cache, metrics) leave refs alone and expose Unwrap.
type RefStore interface {
	// GetRef returns the value of ref name and an opaque version token. A
	// missing ref yields an error wrapping ErrNotFound.
	GetRef(ctx context.Context, name string) (data []byte, version string, err error)

	// PutRef sets ref name to data if its current version is still
	// ifVersion ("" means: only if the ref does not exist yet), and returns
	// the new version. Otherwise it changes nothing and returns an error
	// wrapping ErrConflict.
	PutRef(ctx context.Context, name string, data []byte, ifVersion string) (version string, err error)
}

// MaxRefSize bounds a ref's value: refs point at data, they are not data.
const MaxRefSize = 1 << 20

// CheckRefName rejects ref names that could escape a store's ref space, be
// ambiguous, or name a store's own files: 1 to 128 characters of
// [a-z0-9._-], at most one "/" between non-empty parts, and every part
// starting with a letter or digit. The last rule keeps "."-files (a
// DirStore's refs/.lock, which publishers flock, and any temp file) out of
// the ref namespace: GET /v1/refs/.lock must not read the lock, nor a PUT
// replace it.
func CheckRefName(name string) error {
	if len(name) == 0 || len(name) > 128 {
		return fmt.Errorf("%w: ref name %q: length %d", ErrMalformed, clip(name), len(name))
	}
	slashes := 0
	part := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '/' {
			p := name[part:i]
			if p == "" || !isAlnum(p[0]) {
				return fmt.Errorf("%w: ref name %q: bad part %q (parts start with a letter or digit)", ErrMalformed, clip(name), p)
			}
			if i < len(name) {
				slashes++
			}
			part = i + 1
			continue
		}
		c := name[i]
		if !(isAlnum(c) || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: ref name %q: character %q", ErrMalformed, clip(name), c)
		}
	}
	if slashes > 1 {
		return fmt.Errorf("%w: ref name %q: too deep", ErrMalformed, clip(name))
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
