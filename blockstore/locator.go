package blockstore

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// MaxBlockSize is the largest block the system handles. A locator naming a
// bigger block is malformed: no reader should be talked into allocating an
// arbitrary amount of memory by a string.
const MaxBlockSize = 64 << 20

// Locator says which block to read and how big it is. The size travels with
// the hash so that a buffer of the right size can be taken from the Pool
// before the fetch starts, and so that a short or long read is detected.
type Locator struct {
	Hash Hash
	Size int64
}

// LocatorOf returns the Locator of the block whose content is p.
func LocatorOf(p []byte) Locator { return Locator{Hash: Sum(p), Size: int64(len(p))} }

// String returns "<64 lowercase hex>+<decimal size>", the form ParseLocator
// accepts.
func (l Locator) String() string {
	var b [64 + 1 + 20]byte
	return string(l.appendTo(b[:0]))
}

func (l Locator) appendTo(b []byte) []byte {
	b = hex.AppendEncode(b, l.Hash[:])
	b = append(b, '+')
	return strconv.AppendInt(b, l.Size, 10)
}

// ParseLocator parses the String form strictly: exactly 64 lowercase hex
// characters, '+', and a decimal size with no sign, no leading zeros (except
// "0" itself), no spaces and no trailing hints, not above MaxBlockSize.
// Strictness buys a canonical form: ParseLocator(s).String() == s whenever
// parsing succeeds. Errors wrap ErrMalformed.
func ParseLocator(s string) (Locator, error) {
	hs, ss, ok := strings.Cut(s, "+")
	if !ok {
		return Locator{}, fmt.Errorf("%w: locator %q: want <hash>+<size>", ErrMalformed, clip(s))
	}
	h, err := ParseHash(hs)
	if err != nil {
		return Locator{}, fmt.Errorf("locator %q: %w", clip(s), err)
	}
	size, err := parseSize(ss)
	if err != nil {
		return Locator{}, fmt.Errorf("%w: locator %q: %v", ErrMalformed, clip(s), err)
	}
	return Locator{Hash: h, Size: size}, nil
}

// MarshalText encodes l as in String.
func (l Locator) MarshalText() ([]byte, error) { return l.appendTo(nil), nil }

// UnmarshalText decodes as ParseLocator.
func (l *Locator) UnmarshalText(b []byte) error {
	v, err := ParseLocator(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Check reports whether l could name a real block: an error wrapping
// ErrMalformed (negative size) or ErrTooLarge (above MaxBlockSize). Stores
// check before they allocate or ask a server for l.Size bytes.
func (l Locator) Check() error { return l.validate() }

// validate reports whether l could name a real block.
func (l Locator) validate() error {
	switch {
	case l.Size < 0:
		return fmt.Errorf("%w: locator %v: negative size", ErrMalformed, l)
	case l.Size > MaxBlockSize:
		return fmt.Errorf("%w: locator %v: size exceeds MaxBlockSize %d", ErrTooLarge, l, MaxBlockSize)
	}
	return nil
}

// parseSize accepts only canonical decimal: strconv.ParseInt would also take
// "+5" and "-0", and a length cap keeps overflow out of the question.
func parseSize(s string) (int64, error) {
	switch {
	case s == "":
		return 0, fmt.Errorf("empty size")
	case len(s) > len(strconv.Itoa(MaxBlockSize)):
		return 0, fmt.Errorf("size exceeds MaxBlockSize %d", MaxBlockSize)
	case len(s) > 1 && s[0] == '0':
		return 0, fmt.Errorf("size has leading zeros")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("size is not a decimal number")
		}
		n = n*10 + int64(c-'0')
	}
	if n > MaxBlockSize {
		return 0, fmt.Errorf("size %d exceeds MaxBlockSize %d", n, MaxBlockSize)
	}
	return n, nil
}
