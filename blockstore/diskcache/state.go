package diskcache

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"

	"blockfs/blockstore"
	"blockfs/internal/fileutil"
)

// The state file is a hint for ordering the index on Open, written by
// Close: a header, then one record per entry (ghosts, small, main; oldest
// first in each), then the CRC-32C of all that. A missing, stale or damaged
// state file only costs policy history, never correctness: the files are
// the truth.
const (
	stateMagic  = "bdcstat1"
	stateRecLen = 32 + 1 + 1 + 4 // hash, queue, freq, size
)

type stateRec struct {
	hash blockstore.Hash
	q    queue
	freq uint8
	size int64
}

// saveStateLocked writes the state file atomically (temp + rename; no
// fsync, since a lost or torn state file is only a lost hint).
func (c *Cache) saveStateLocked() error {
	var b bytes.Buffer
	b.WriteString(stateMagic)
	var rec [stateRecLen]byte
	c.pol.each(func(e *entry) {
		copy(rec[:32], e.hash[:])
		rec[32] = byte(e.q)
		rec[33] = e.freq
		binary.LittleEndian.PutUint32(rec[34:], uint32(e.size))
		b.Write(rec[:])
	})
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.Checksum(b.Bytes(), castagnoli)))
	tmp, err := fileutil.WriteTemp(c.tmp, tempPrefix+"state-", 0o600, false, b.Bytes())
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, stateName)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// readState returns the records of a valid state file, or nil.
func readState(name string) []stateRec {
	b, err := os.ReadFile(name)
	if err != nil || len(b) < len(stateMagic)+4 || string(b[:len(stateMagic)]) != stateMagic {
		return nil
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum || (len(body)-len(stateMagic))%stateRecLen != 0 {
		return nil
	}
	recs := make([]stateRec, 0, (len(body)-len(stateMagic))/stateRecLen)
	for p := body[len(stateMagic):]; len(p) > 0; p = p[stateRecLen:] {
		r := stateRec{q: queue(p[32]), freq: min(p[33], maxFreq), size: int64(binary.LittleEndian.Uint32(p[34:]))}
		copy(r.hash[:], p[:32])
		if r.q != qSmall && r.q != qMain && r.q != qGhost {
			continue
		}
		recs = append(recs, r)
	}
	return recs
}
