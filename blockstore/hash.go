package blockstore

import (
	"encoding/hex"
	"fmt"
)

// Hash is the SHA-256 of a block's bytes: its name, and the proof that the
// bytes are the ones that were asked for.
//
// It is a value type (an array, not a slice) so that it can be a map key and
// be passed around without allocating.
type Hash [32]byte

// ParseHash parses exactly 64 lowercase hex characters. Uppercase is
// rejected on purpose: one block, one spelling, so that String round-trips
// and strings can be compared and used as keys without normalising.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return Hash{}, fmt.Errorf("%w: hash %q: want %d lowercase hex characters, got %d", ErrMalformed, clip(s), 2*len(h), len(s))
	}
	for i := range h {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return Hash{}, fmt.Errorf("%w: hash %q: not lowercase hex", ErrMalformed, s)
		}
		h[i] = hi<<4 | lo
	}
	return h, nil
}

// String returns the hash as 64 lowercase hex characters.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero value, which is never a valid block
// name in practice and so marks "no hash".
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes h as in String, so that a Hash is a plain string in
// JSON and similar formats.
func (h Hash) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(b, h[:])
	return b, nil
}

// UnmarshalText decodes as ParseHash.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// clip shortens untrusted input before it goes into an error message, so a
// hostile multi-megabyte "hash" cannot blow up logs.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
