package chunker

import (
	"io"
)

// initialBuf is the first buffer size. The buffer doubles on demand, then
// jumps to 2*Max, so small files do not cost Max-sized allocations.
const initialBuf = 64 << 10

// maxEmptyReads bounds consecutive (0, nil) reads before giving up.
const maxEmptyReads = 100

// Chunker splits a stream into chunks with Cut's rule. It holds one buffer
// of at most 2*Max bytes and allocates nothing per chunk.
type Chunker struct {
	r          io.Reader
	p          params
	buf        []byte
	start, end int   // unconsumed data is buf[start:end]
	eof        bool  // r reported io.EOF
	err        error // sticky read error other than io.EOF
}

// New returns a Chunker reading from r. It fails only if cfg is invalid.
func New(r io.Reader, cfg Config) (*Chunker, error) {
	p, err := cfg.params()
	if err != nil {
		return nil, err
	}
	return &Chunker{r: r, p: p}, nil
}

// Reset makes c read a new stream with the same Config, keeping its buffer.
func (c *Chunker) Reset(r io.Reader) {
	*c = Chunker{r: r, p: c.p, buf: c.buf}
}

// Next returns the next chunk. The slice aliases the internal buffer and is
// valid only until the following Next or Reset call. After the last chunk
// Next returns io.EOF (at once for empty input). A read error is returned
// once the chunks it leaves undetermined are reached: chunks whose boundary
// was fixed by data read before the error are still delivered.
func (c *Chunker) Next() ([]byte, error) {
	data := c.buf[c.start:c.end]
	n, found := c.p.cut(data)
	if !found && !c.eof && c.err == nil {
		// Fewer than Max bytes buffered and no cut point among them: only
		// now is more data needed. A cut point found in a partial buffer is
		// final, since it depends only on the bytes before it, so refills
		// are rare and each moves only a short tail to the front.
		c.fill()
		data = c.buf[c.start:c.end]
		n, found = c.p.cut(data)
	}
	if !found && !c.eof {
		// fill stops short of Max bytes only at EOF or on an error, so
		// c.err is set: the rest of the stream cannot be chunked.
		return nil, c.err
	}
	if n == 0 {
		return nil, io.EOF
	}
	c.start += n
	return data[:n:n], nil
}

// fill moves the unconsumed bytes to the front and reads until the buffer is
// full (growing it if it cannot hold Max bytes), EOF, or an error.
func (c *Chunker) fill() {
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	empty := 0
	for {
		if c.end == len(c.buf) {
			if c.end >= c.p.max {
				return
			}
			c.grow()
		}
		n, err := c.r.Read(c.buf[c.end:])
		c.end += n
		switch {
		case err == io.EOF:
			c.eof = true
			return
		case err != nil:
			c.err = err
			return
		case n == 0:
			if empty++; empty >= maxEmptyReads {
				c.err = io.ErrNoProgress
				return
			}
		default:
			empty = 0
		}
	}
}

func (c *Chunker) grow() {
	size := max(2*len(c.buf), initialBuf)
	if size >= c.p.max {
		// The stream is at least Max long: go straight to the steady
		// 2*Max, so each refill copies less than Max and reads at least Max.
		size = 2 * c.p.max
	}
	nb := make([]byte, size)
	copy(nb, c.buf[:c.end])
	c.buf = nb
}
