// Package tier is a Store over several `blockfs serve` members that all
// serve the same backing store: a read tier that scales past one server.
// Each block has an owner among the healthy members (rendezvous hashing, see
// rank.go), so across every client of the tier a block is fetched from the
// backing store by one member once, and each member's memory and uplink
// carry only its share. A member that fails is marked down and its blocks go
// to their next-ranked member at once; a prober brings it back when it
// answers again. A tier is a store string like any other
// ("http://a:8420,http://b:8420", or in groups "a|b;c", see parseGroups),
// so a serve can itself read from a tier (rack servers in front of site
// servers in front of S3). Place and Router let clients spread a file's
// blocks evenly while each is still read from the store by its owner only
// (place.go).
package tier

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/internal/netstore"
)

// Defaults for zero Options fields.
const (
	DefaultProbeInterval = time.Second
	DefaultRounds        = 5
)

// Options say how to reach the members. Zero fields take the defaults.
type Options struct {
	// Client is how each member is spoken to (token, TLS, timeouts). Its
	// FailFast is set: a member that fails is not retried, the next one
	// is asked instead (a 503 is still waited out on the member that
	// said it, as netstore's policy says).
	Client httpstore.ClientOptions
	// ProbeInterval is how long a member stays down before the first
	// health probe, and between probes (default 1s, with ±25% jitter).
	ProbeInterval time.Duration
	// StartDown lets Open succeed with no member answering yet (they all
	// start down, and the prober brings them up): the peers of a serve,
	// which start at the same time as it does.
	StartDown bool
	// Rounds bounds how many times a call goes through every member when
	// all of them fail (default 5), with a jittered backoff between
	// rounds (netstore's: Client.RetryBase doubling up to RetryMax).
	Rounds int
}

// Store is a blockstore.Store and blockstore.RefStore over the members of
// a tier. It is safe for concurrent use.
type Store struct {
	members []*member
	seeds   []uint64 // by member
	groups  [][]int  // member indexes of each group, in fallback order
	opts    Options
	// refStale: the last ref answer was flagged stale by the member that
	// gave it. Health goes by the last answer, not by every member's: a
	// member asked once during an outage and never since must not keep the
	// tier unhealthy after the store is back.
	refStale atomic.Bool
	balance  atomic.Bool   // Place spreads blocks (SetBalance)
	hints    hints         // Place's, for Get
	base     time.Duration // backoff between rounds
	maxWait  time.Duration

	stop     chan struct{}
	wg       sync.WaitGroup
	closeOne sync.Once
}

var (
	_ blockstore.Store        = (*Store)(nil)
	_ blockstore.RefStore     = (*Store)(nil)
	_ blockstore.HashedPutter = (*Store)(nil)
)

// ErrAllDown wraps the error of a call that no member could serve.
var ErrAllDown = errors.New("tier: no member could serve the request")

// IsTier reports whether a store string names a tier: several URLs
// separated by commas or bars, in groups separated by semicolons (see
// parseGroups).
func IsTier(spec string) bool { return strings.ContainsAny(spec, ",|;") }

// normalize is a member URL as it is compared and hashed.
func normalize(u string) string { return strings.TrimRight(strings.TrimSpace(u), "/") }

// memberName splits a member of a store string into the URL it is reached
// at and the name it is hashed by: the URL's fragment ("http://10.1.2.3:8420#site-a")
// when there is one, else the URL itself. A fragment lets clients that
// reach one member at different addresses (NAT, per-rack DNS names, a proxy
// in front of each client) still agree on every block's owner; it is never
// sent to the member.
func memberName(raw string) (url, name string) {
	url, frag, _ := strings.Cut(strings.TrimSpace(raw), "#")
	url = normalize(url)
	if frag = strings.TrimSpace(frag); frag != "" {
		return url, frag
	}
	return url, url
}

// Open returns the tier of the member URLs in spec (see parseGroups), after
// checking each member (/healthz, concurrently). Members that do not
// answer start down (the prober brings them back); a tier with none
// answering, a member refusing the token, a TLS failure, an empty member
// or group, or a URL that does not parse is an error.
func Open(ctx context.Context, spec string, opts Options) (*Store, error) {
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.Rounds <= 0 {
		opts.Rounds = DefaultRounds
	}
	opts.Client.FailFast = true
	pol := netstore.Policy{RetryBase: opts.Client.RetryBase, RetryMax: opts.Client.RetryMax}.WithDefaults()
	s := &Store{opts: opts, base: pol.RetryBase, maxWait: pol.RetryMax, stop: make(chan struct{})}
	groups, err := parseGroups(spec)
	if err != nil {
		return nil, err
	}
	for g, raws := range groups {
		var idx []int
		for _, raw := range raws {
			u, name := memberName(raw)
			c, err := httpstore.New(u, opts.Client)
			if err != nil {
				s.closeClients()
				return nil, fmt.Errorf("tier: %w", err)
			}
			idx = append(idx, len(s.members))
			s.members = append(s.members, &member{url: u, name: name, group: g, c: c})
			s.seeds = append(s.seeds, seedOf(name))
		}
		s.groups = append(s.groups, idx)
	}
	if err := s.check(ctx); err != nil {
		s.closeClients()
		return nil, fmt.Errorf("tier %s: %w", spec, err)
	}
	s.wg.Add(1)
	go s.probe()
	return s, nil
}

// check pings every member at once; see Open.
func (s *Store) check(ctx context.Context) error {
	errs := make([]error, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.c.Ping(ctx)
		}()
	}
	wg.Wait()
	up := 0
	for i, err := range errs {
		switch {
		case err == nil:
			up++
		case errors.Is(err, httpstore.ErrUnauthorized), errors.Is(err, httpstore.ErrTLS):
			return err // the same configuration would fail on every member
		default:
			s.members[i].markDown(time.Now(), err)
		}
	}
	if up == 0 && !s.opts.StartDown {
		return fmt.Errorf("%w: %w", ErrAllDown, errors.Join(errs...))
	}
	return nil
}

// Close stops the prober and closes idle connections.
func (s *Store) Close() error {
	s.closeOne.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.closeClients()
	})
	return nil
}

func (s *Store) closeClients() {
	for _, m := range s.members {
		m.c.Close()
	}
}

// names returns the members' names (see memberName).
func (s *Store) names() []string {
	out := make([]string, len(s.members))
	for i, m := range s.members {
		out[i] = m.name
	}
	return out
}

// URLs returns the members' URLs, in the order the store string gave them.
func (s *Store) URLs() []string {
	out := make([]string, len(s.members))
	for i, m := range s.members {
		out[i] = m.url
	}
	return out
}

// ranked returns every member's index for key, by group and rank within
// the group, whatever their health: the order every client and member
// computes alike.
func (s *Store) ranked(key uint64) []int {
	ranked := make([]int, 0, len(s.members))
	for _, g := range s.groups {
		seeds := make([]uint64, len(g))
		for j, i := range g {
			seeds[j] = s.seeds[i]
		}
		for _, j := range rank(seeds, key) {
			ranked = append(ranked, g[j])
		}
	}
	return ranked
}

// orderFrom returns the members to try, from ranked: the healthy ones of
// the first group by rank, then those of the next group (a fallback group
// is asked only when every member of the groups before it is down or
// failed), and so on; then, as a last resort, the ones marked down (by
// group and rank too): a member is only skipped while another might
// answer. With first >= 0 and up, that member is asked before the rest: a
// placement hint (Place).
func (s *Store) orderFrom(ranked []int, first int) []*member {
	out := make([]*member, 0, len(s.members))
	hinted := first >= 0 && !s.members[first].isDown()
	if hinted {
		out = append(out, s.members[first])
	}
	var down []*member
	for _, i := range ranked {
		switch m := s.members[i]; {
		case hinted && i == first:
		case m.isDown():
			down = append(down, m)
		default:
			out = append(out, m)
		}
	}
	return append(out, down...)
}

// call runs fn on the members for key in order until one gives an answer:
// success or a definite answer (not found, conflict, ...) ends the call; a
// member failure marks that member down and moves to the next at once.
// When every member failed, the call waits a jittered backoff and goes
// round again, at most Rounds times, or until ctx ends.
func (s *Store) call(ctx context.Context, key uint64, op string, fn func(*member) error) error {
	return s.callFirst(ctx, key, -1, op, fn)
}

// callFirst is call with member first (if >= 0 and up) asked before the
// others: a placement hint.
func (s *Store) callFirst(ctx context.Context, key uint64, first int, op string, fn func(*member) error) error {
	var errs []error
	for round := 1; ; round++ {
		for _, m := range s.orderFrom(s.ranked(key), first) {
			err := m.do(ctx, fn)
			if err == nil || !memberFailure(ctx, err) {
				return err
			}
			errs = append(errs, err)
		}
		if ctx.Err() != nil || round >= s.opts.Rounds {
			break
		}
		d := min(s.maxWait, s.base<<min(round-1, 30))
		t := time.NewTimer(time.Duration(rand.Int64N(int64(d) + 1)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	last := errs[len(errs)-1]
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tier: %s: %w after %d member failures (last: %w)", op, err, len(errs), last)
	}
	return fmt.Errorf("tier: %s: %w: %d failures in %d rounds (last: %w)", op, ErrAllDown, len(errs), s.opts.Rounds, last)
}

// memberFailure reports whether err says the member, not the request, is
// the problem: it refused, timed out, reset, answered 5xx or sent a body
// of the wrong size. Definite answers (not found, conflict, malformed, too
// large, unauthorized), a busy member waited out to the deadline, and the
// caller's own context ending are not: another member would say the same.
func memberFailure(ctx context.Context, err error) bool {
	var perm permanentErr
	if ctx.Err() != nil || errors.As(err, &perm) {
		return false
	}
	switch {
	case errors.Is(err, blockstore.ErrNotFound), errors.Is(err, blockstore.ErrConflict),
		errors.Is(err, blockstore.ErrMalformed), errors.Is(err, blockstore.ErrTooLarge),
		errors.Is(err, httpstore.ErrUnauthorized), errors.Is(err, blockstore.ErrBusy),
		errors.Is(err, errors.ErrUnsupported):
		return false
	}
	return true
}

// notDelivered reports whether err shows the request never reached the
// member (the connection was refused or never made), so that sending it to
// another member cannot apply it twice.
func notDelivered(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
