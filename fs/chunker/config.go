package chunker

import (
	"errors"
	"fmt"
	"math/bits"
)

// Size limits. MaxLimit bounds memory: a Chunker buffers about 2*Max bytes.
const (
	DefaultAvg = 1 << 20 // 1 MiB
	MaxLimit   = 64 << 20
	// MinAvg is the smallest Avg accepted in content-defined mode; below it
	// the large-chunk mask would have too few bits to mean anything.
	MinAvg = 64
)

// Config selects the chunking parameters. Zero fields take defaults derived
// from Avg (itself 1 MiB when zero): Min = Avg/4, Max = min(4*Avg, MaxLimit).
// So the zero Config is 256 KiB / 1 MiB / 4 MiB.
//
// In content-defined mode Avg must be a power of two (the cut masks are
// derived from log2(Avg)) and Min <= Avg <= Max <= MaxLimit must hold.
//
// Changing any of Min, Avg or Max changes chunk boundaries, so a store should
// keep using the Config it was created with if it wants dedup across imports.
type Config struct {
	Min, Avg, Max int
	// Fixed selects fixed-size blocks of Avg bytes (the last one shorter).
	// Min and Max are ignored, and Avg need not be a power of two.
	Fixed bool
}

// DefaultConfig returns the defaults spelled out: 256 KiB / 1 MiB / 4 MiB.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.Avg == 0 {
		c.Avg = DefaultAvg
	}
	if c.Fixed {
		return c
	}
	if c.Min == 0 {
		c.Min = c.Avg / 4
	}
	if c.Max == 0 {
		c.Max = min(4*c.Avg, MaxLimit)
	}
	return c
}

// Validate reports whether c (after defaults) describes a usable chunker.
func (c Config) Validate() error {
	_, err := c.params()
	return err
}

// params is the validated, precomputed form of a Config used by the cut loop.
type params struct {
	fixed         bool
	min, avg, max int
	maskS, maskL  uint64 // stricter mask below avg, looser one above
}

func (c Config) params() (params, error) {
	c = c.withDefaults()
	if c.Min < 0 || c.Avg < 0 || c.Max < 0 {
		return params{}, fmt.Errorf("chunker: negative size in config %+v", c)
	}
	if c.Fixed {
		if c.Avg > MaxLimit {
			return params{}, fmt.Errorf("chunker: fixed block size %d exceeds limit %d", c.Avg, MaxLimit)
		}
		return params{fixed: true, min: c.Avg, avg: c.Avg, max: c.Avg}, nil
	}
	switch {
	case c.Avg&(c.Avg-1) != 0:
		return params{}, fmt.Errorf("chunker: Avg %d is not a power of two", c.Avg)
	case c.Avg < MinAvg:
		return params{}, fmt.Errorf("chunker: Avg %d is below the minimum %d", c.Avg, MinAvg)
	case c.Min > c.Avg:
		return params{}, fmt.Errorf("chunker: Min %d exceeds Avg %d", c.Min, c.Avg)
	case c.Avg > c.Max:
		return params{}, fmt.Errorf("chunker: Avg %d exceeds Max %d", c.Avg, c.Max)
	case c.Max > MaxLimit:
		return params{}, fmt.Errorf("chunker: Max %d exceeds limit %d", c.Max, MaxLimit)
	case c.Min < 1:
		return params{}, errors.New("chunker: Min must be at least 1")
	}
	b := bits.TrailingZeros(uint(c.Avg))
	// Normalized chunking, level 2 (FastCDC paper): below Avg a cut needs
	// b+2 zero bits (4x less likely), above Avg only b-2 (4x more likely),
	// which squeezes the size distribution towards Avg.
	return params{
		min: c.Min, avg: c.Avg, max: c.Max,
		maskS: mask(b + 2),
		maskL: mask(b - 2),
	}, nil
}

// maskTop is the highest hash bit a mask uses. The gear hash shifts left, so
// bit k depends on the last k+1 bytes: high bits see the widest window. The
// top bit is left out so the two-bytes-per-step loop can test the hash of
// the odd byte pre-shifted by one position (see scan).
const maskTop = 62

// mask returns n consecutive one bits ending at bit maskTop.
func mask(n int) uint64 {
	return (uint64(1)<<n - 1) << (maskTop + 1 - n)
}
