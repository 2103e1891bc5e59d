package tier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storetest"
	"blockfs/internal/testsvc"
)

// switchable is a member that can be taken down: while down it drops
// every connection without an answer, or (busy > 0) answers 503 that many
// times.
type switchable struct {
	h    http.Handler
	down atomic.Bool
	busy atomic.Int64
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.busy.Add(-1) >= 0 {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if s.down.Load() {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
		return
	}
	s.h.ServeHTTP(w, r)
}

// cluster is n members, each a Handler with its own pool over its own
// Counting of one shared store.
type cluster struct {
	urls   []string
	sw     []*switchable
	counts []*storetest.Counting
	srv    []*httptest.Server
}

func newCluster(t *testing.T, n int, shared blockstore.Store) *cluster {
	c := &cluster{}
	for range n {
		cnt := storetest.NewCounting(shared)
		pool := blockstore.NewPool(cnt, blockstore.PoolConfig{})
		t.Cleanup(pool.Close)
		sw := &switchable{h: httpstore.NewHandler(cnt, pool, httpstore.ServerOptions{Token: "tok"})}
		sw.busy.Store(-1 << 40)
		srv := httptest.NewServer(sw)
		t.Cleanup(srv.Close)
		c.urls, c.sw, c.counts, c.srv = append(c.urls, srv.URL), append(c.sw, sw), append(c.counts, cnt), append(c.srv, srv)
	}
	return c
}

func (c *cluster) open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), strings.Join(c.urls, ","), Options{
		Client:        httpstore.ClientOptions{Token: "tok", RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond},
		ProbeInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newDir(t *testing.T) *blockstore.DirStore {
	d, err := blockstore.OpenDir(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestContract: the Store and RefStore contracts on a tier of 3 members
// over one DirStore, and again with one member down from the start.
func TestContract(t *testing.T) {
	newStore := func(t *testing.T) blockstore.Store { return newCluster(t, 3, newDir(t)).open(t) }
	storetest.Run(t, newStore)
	storetest.RunRefs(t, newStore)
	t.Run("OneDown", func(t *testing.T) {
		newStore := func(t *testing.T) blockstore.Store {
			c := newCluster(t, 3, newDir(t))
			c.srv[0].Close() // refused
			return c.open(t)
		}
		storetest.Run(t, newStore)
		storetest.RunRefs(t, newStore)
	})
}

func getAll(t *testing.T, s blockstore.Store, blocks [][]byte) {
	t.Helper()
	for _, b := range blocks {
		loc := blockstore.LocatorOf(b)
		dst := make([]byte, loc.Size)
		if _, err := s.Get(context.Background(), loc, dst); err != nil {
			t.Fatalf("get %v: %v", loc, err)
		}
		if blockstore.Sum(dst) != loc.Hash {
			t.Fatalf("get %v: wrong bytes", loc)
		}
	}
}

// TestSharding: 4 clients of a 3-member tier read the same 90 blocks at
// once; the store is read once per block, by the block's owner, and every
// member owns some.
func TestSharding(t *testing.T) {
	blocks := storetest.Blocks(7, 90, 4096)
	c := newCluster(t, 3, storetest.NewMem(blocks...))
	var wg sync.WaitGroup
	for range 4 {
		s := c.open(t)
		wg.Add(1)
		go func() { defer wg.Done(); getAll(t, s, blocks) }()
	}
	wg.Wait()
	owned := make([]int64, 3)
	for _, b := range blocks {
		h := blockstore.Sum(b)
		o := Owner(c.urls, h)
		owned[o]++
		for i, cnt := range c.counts {
			want := int64(0)
			if i == o {
				want = 1
			}
			if got := cnt.GetsOf(h); got != want {
				t.Fatalf("member %d read block %v %d times from the store, want %d (owner %d)", i, h, got, want, o)
			}
		}
	}
	for i, n := range owned {
		if n == 0 {
			t.Errorf("member %d owns none of 90 blocks", i)
		}
	}
}

// TestFailover: with one member dropping connections, every read still
// succeeds, its blocks served by the next-ranked members; it is marked
// down, and once it answers again the prober marks it up and its blocks
// come back to it.
func TestFailover(t *testing.T) {
	blocks := storetest.Blocks(8, 60, 4096)
	c := newCluster(t, 3, storetest.NewMem(blocks...))
	s := c.open(t)
	c.sw[0].down.Store(true)
	getAll(t, s, blocks)
	st := s.Stats()
	if st.Members[0].State != "down" || st.Members[0].Failures == 0 || st.Up != 2 {
		t.Fatalf("after reads with member 0 dropping connections: %+v", st)
	}
	if n := c.counts[0].Gets(); n != 0 {
		t.Fatalf("member 0, down, read %d blocks", n)
	}
	// Only the first call found out: the rest skipped the member.
	if f := st.Members[0].Failures; f != 1 {
		t.Errorf("member 0 was tried %d times while down, want once", f)
	}
	c.sw[0].down.Store(false)
	testsvc.WaitFor(t, "member 0 probed back up", func() bool { return s.Stats().Members[0].State == "up" })
	fresh := storetest.Blocks(9, 30, 4096)
	for _, b := range fresh {
		c.counts[0].Store.Put(context.Background(), blockstore.Sum(b), b)
	}
	getAll(t, s, fresh)
	if n := c.counts[0].Gets(); n == 0 {
		t.Fatal("member 0, back up, served none of 30 fresh blocks")
	}
	if st := s.Stats().Members[0]; st.Recoveries != 1 || st.Probes == 0 {
		t.Fatalf("member 0: %+v", st)
	}
}

// TestBusyIsNotDown: a member answering 503 is waited for (netstore's
// policy), not marked down.
func TestBusyIsNotDown(t *testing.T) {
	blocks := storetest.Blocks(10, 30, 1000)
	c := newCluster(t, 2, storetest.NewMem(blocks...))
	s := c.open(t)
	for _, sw := range c.sw {
		sw.busy.Store(3)
	}
	getAll(t, s, blocks)
	for i, m := range s.Stats().Members {
		if m.State != "up" || m.Failures != 0 || m.Client.Busy == 0 {
			t.Errorf("member %d: %+v; want up, no failures, some 503s", i, m)
		}
	}
}

// TestAllDown: with every member down, a call fails after its rounds with
// ErrAllDown, and a missing block is still ErrNotFound when one answers.
func TestAllDown(t *testing.T) {
	blocks := storetest.Blocks(11, 1, 1000)
	c := newCluster(t, 2, storetest.NewMem(blocks...))
	s := c.open(t)
	if ok, reason := blockstore.Health(s); !ok {
		t.Fatalf("all up: unhealthy, %q", reason)
	}
	for _, sw := range c.sw {
		sw.down.Store(true)
	}
	loc := blockstore.LocatorOf(blocks[0])
	if _, err := s.Get(context.Background(), loc, make([]byte, loc.Size)); !errors.Is(err, ErrAllDown) {
		t.Fatalf("all down: %v, want ErrAllDown", err)
	}
	if st := s.Stats(); st.Up != 0 || st.Members[0].Failures != DefaultRounds {
		t.Fatalf("all down: %+v; want both down, each tried once per round", st)
	}
	if ok, reason := blockstore.Health(s); ok || !strings.Contains(reason, "no member") {
		t.Fatalf("all down: health %v %q; want unhealthy, no member up", ok, reason)
	}
	c.sw[1].down.Store(false)
	missing := blockstore.LocatorOf([]byte("never stored"))
	if _, err := s.Get(context.Background(), missing, make([]byte, missing.Size)); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("one up, missing block: %v, want ErrNotFound", err)
	}
}

// TestOpen: a tier starts with some members down (they start down), not
// with none up, and not with a wrong token.
func TestOpen(t *testing.T) {
	c := newCluster(t, 2, storetest.NewMem())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	s, err := Open(context.Background(), c.urls[0]+","+dead, Options{Client: httpstore.ClientOptions{Token: "tok"}})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Up != 1 || st.Members[1].State != "down" {
		t.Fatalf("one member dead at open: %+v", st)
	}
	s.Close()
	if _, err := Open(context.Background(), dead+","+dead+"/x", Options{}); !errors.Is(err, ErrAllDown) {
		t.Fatalf("none up: %v, want ErrAllDown", err)
	}
	if _, err := Open(context.Background(), strings.Join(c.urls, ","), Options{Client: httpstore.ClientOptions{Token: "wrong"}}); !errors.Is(err, httpstore.ErrUnauthorized) {
		t.Fatalf("wrong token: %v, want ErrUnauthorized", err)
	}
	if _, err := Open(context.Background(), c.urls[0]+","+c.urls[0]+"/", Options{}); err == nil {
		t.Fatal("a member named twice: no error")
	}
}

// TestMemberNames: two clients reach the same three members at different
// addresses (a second listener in front of each), both naming them by URL
// fragments: they agree on every block's owner, so each member read each
// block it owns from the store once and no other block.
func TestMemberNames(t *testing.T) {
	blocks := storetest.Blocks(11, 60, 4096)
	c := newCluster(t, 3, storetest.NewMem(blocks...))
	var direct, other []string
	for i, sw := range c.sw {
		alt := httptest.NewServer(sw)
		t.Cleanup(alt.Close)
		name := "#m" + string(rune('0'+i))
		direct, other = append(direct, c.urls[i]+name), append(other, alt.URL+name)
	}
	var wg sync.WaitGroup
	for _, spec := range []string{strings.Join(direct, ","), strings.Join(other, ",")} {
		s, err := Open(context.Background(), spec, Options{Client: httpstore.ClientOptions{Token: "tok"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		for _, u := range s.URLs() {
			if strings.Contains(u, "#") {
				t.Fatalf("the fragment is part of the URL asked: %s", u)
			}
		}
		wg.Add(1)
		go func() { defer wg.Done(); getAll(t, s, blocks) }()
	}
	wg.Wait()
	for _, b := range blocks {
		h := blockstore.Sum(b)
		o := Owner(other, h)
		if Owner(direct, h) != o {
			t.Fatalf("block %v: owners differ between the two namings", h)
		}
		for i, cnt := range c.counts {
			want := int64(0)
			if i == o {
				want = 1
			}
			if got := cnt.GetsOf(h); got != want {
				t.Fatalf("member %d read block %v %d times from the store, want %d (owner %d)", i, h, got, want, o)
			}
		}
	}
	if _, err := Open(context.Background(), c.urls[0]+"#a,"+c.urls[1]+"#a", Options{}); err == nil {
		t.Fatal("two members with one name: no error")
	}
}

// refOutage is a store whose ref reads fail while down.
type refOutage struct {
	*storetest.Mem
	down atomic.Bool
}

func (o *refOutage) GetRef(ctx context.Context, name string) ([]byte, string, error) {
	if o.down.Load() {
		return nil, "", errors.New("store unreachable")
	}
	return o.Mem.GetRef(ctx, name)
}

// TestHealthFollowsLastRefAnswer: the tier is unhealthy while its last
// ref answer was stale, and healthy again once a fresh one comes, even
// from another member than the one that answered stale (which keeps its
// own store_down until it is asked again).
func TestHealthFollowsLastRefAnswer(t *testing.T) {
	st := &refOutage{Mem: storetest.NewMem()}
	if _, err := st.PutRef(context.Background(), "meta/head", []byte("v1"), ""); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 2, st)
	s := c.open(t)
	owner := rank(s.seeds, nameKey("meta/head"))[0]
	other := 1 - owner
	c.sw[owner].down.Store(true)
	getRef := func() {
		t.Helper()
		if data, _, err := s.GetRef(context.Background(), "meta/head"); err != nil || string(data) != "v1" {
			t.Fatalf("get ref: %q %v", data, err)
		}
	}
	getRef() // from the other member, fresh; the owner is marked down
	if ok, reason := blockstore.Health(s); !ok {
		t.Fatalf("fresh answer: unhealthy, %q", reason)
	}
	st.down.Store(true)
	getRef() // the other member's last value, flagged
	if ok, reason := blockstore.Health(s); ok || reason != blockstore.ReasonStoreDown {
		t.Fatalf("stale answer: health %v %q; want false, %q", ok, reason, blockstore.ReasonStoreDown)
	}
	if !s.Stats().StoreDown {
		t.Fatal("stale answer: stats do not say store_down")
	}
	st.down.Store(false)
	c.sw[owner].down.Store(false)
	testsvc.WaitFor(t, "the owner probed back up", func() bool { return s.Stats().Members[owner].State == "up" })
	getRef() // from the owner, fresh
	if ok, reason := blockstore.Health(s); !ok {
		t.Fatalf("fresh answer from the owner: unhealthy, %q", reason)
	}
	if st := s.Stats(); st.StoreDown || !st.Members[other].StoreDown {
		t.Fatalf("stats %+v: want the tier not store_down, the member that answered stale still so", st)
	}
}

// TestParseGroups: groups and members of a store string, and the errors
// that name what is wrong.
func TestParseGroups(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want [][]string
	}{
		{"http://a,http://b", [][]string{{"http://a", "http://b"}}},
		{"http://a|http://b;http://c", [][]string{{"http://a", "http://b"}, {"http://c"}}},
		{" http://a | http://b#x ; http://c,http://d ", [][]string{{" http://a ", " http://b#x "}, {" http://c", "http://d "}}},
	} {
		got, err := parseGroups(tc.spec)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseGroups(%q) = %q, %v; want %q", tc.spec, got, err, tc.want)
		}
	}
	for spec, want := range map[string]string{
		"http://a;;http://b":          "group 2 is empty",
		"http://a;":                   "group 2 is empty",
		";http://a":                   "group 1 is empty",
		"http://a; ;http://b":         "group 2 is empty",
		"http://a||http://b":          "group 1: member 2 is empty",
		"http://a;http://b|":          "group 2: member 2 is empty",
		"http://a;http://b,,":         "group 2: member 2 is empty",
		"http://a|http://b;http://a/": "member http://a/ named twice",
		"http://a#x;http://b#x":       "named twice",
	} {
		if _, err := parseGroups(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseGroups(%q): %v; want an error saying %q", spec, err, want)
		}
		if _, err := Open(context.Background(), spec, Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q): %v; want an error saying %q", spec, err, want)
		}
	}
}

// TestGroupFallback: a tier "a|b;c" over real servers: a and b share
// the blocks (each reads from the store exactly the blocks it owns among
// the two), c reads none while one of them is up; with a down, b takes
// a's blocks; with both down, c serves every block; once a and b answer
// again the probe brings them back and c reads nothing more.
func TestGroupFallback(t *testing.T) {
	all := storetest.Blocks(12, 120, 2048)
	c := newCluster(t, 3, storetest.NewMem(all...))
	s, err := Open(context.Background(), c.urls[0]+"|"+c.urls[1]+";"+c.urls[2], Options{
		Client:        httpstore.ClientOptions{Token: "tok", RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond},
		ProbeInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	gets := func(phase [][]byte) [3]int64 {
		var n [3]int64
		for _, b := range phase {
			for i, cnt := range c.counts {
				n[i] += cnt.GetsOf(blockstore.Sum(b))
			}
		}
		return n
	}
	group := c.urls[:2]

	phase := all[:40]
	getAll(t, s, phase)
	n := gets(phase)
	for _, b := range phase {
		o := Owner(group, blockstore.Sum(b))
		if got := c.counts[o].GetsOf(blockstore.Sum(b)); got != 1 {
			t.Fatalf("all up: owner %d read block %d times, want 1", o, got)
		}
	}
	if n[2] != 0 || n[0]+n[1] != int64(len(phase)) || n[0] == 0 || n[1] == 0 {
		t.Fatalf("all up: store reads per member %v; want the %d blocks split between a and b, none by c", n, len(phase))
	}

	c.sw[0].down.Store(true)
	phase = all[40:80]
	getAll(t, s, phase)
	if n := gets(phase); n != [3]int64{0, int64(len(phase)), 0} {
		t.Fatalf("a down: store reads per member %v; want all %d by b", n, len(phase))
	}

	c.sw[1].down.Store(true)
	phase = all[80:100]
	getAll(t, s, phase)
	if n := gets(phase); n != [3]int64{0, 0, int64(len(phase))} {
		t.Fatalf("a and b down: store reads per member %v; want all %d by c", n, len(phase))
	}
	if st := s.Stats(); st.Members[2].Group != 1 || st.Members[0].State != "down" || st.Members[1].State != "down" || st.Up != 1 {
		t.Fatalf("a and b down: %+v", st)
	}

	c.sw[0].down.Store(false)
	c.sw[1].down.Store(false)
	testsvc.WaitFor(t, "a and b probed back up", func() bool { return s.Stats().Up == 3 })
	phase = all[100:]
	getAll(t, s, phase)
	if n := gets(phase); n[2] != 0 || n[0]+n[1] != int64(len(phase)) {
		t.Fatalf("a and b back: store reads per member %v; want the %d blocks read by a and b, none by c", n, len(phase))
	}
}

// forwarding is n members that forward to each block's owner (Router),
// each over its own Counting of one shared store, and their store string.
type forwarding struct {
	spec   string
	sw     []*switchable
	counts []*storetest.Counting
}

func newForwarding(t *testing.T, n int, shared blockstore.Store) *forwarding {
	f := &forwarding{}
	var members []string
	for i := range n {
		sw := &switchable{}
		sw.busy.Store(-1 << 40)
		sw.down.Store(true) // until its handler is set
		srv := httptest.NewServer(sw)
		t.Cleanup(srv.Close)
		f.sw = append(f.sw, sw)
		members = append(members, fmt.Sprintf("%s#m%d", srv.URL, i))
	}
	f.spec = strings.Join(members, ",")
	var all []*Store
	for i, sw := range f.sw {
		peers, err := Open(context.Background(), f.spec, Options{
			Client:    httpstore.ClientOptions{Token: "tok", RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond},
			StartDown: true, ProbeInterval: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peers.Close() })
		cnt := storetest.NewCounting(shared)
		r, err := NewRouter(cnt, peers, fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		pool := blockstore.NewPool(r, blockstore.PoolConfig{})
		t.Cleanup(pool.Close)
		sw.h = httpstore.NewHandler(r, pool, httpstore.ServerOptions{Token: "tok"})
		f.counts, all = append(f.counts, cnt), append(all, peers)
	}
	for _, sw := range f.sw {
		sw.down.Store(false)
	}
	testsvc.WaitFor(t, "every member to see every other up", func() bool {
		for _, p := range all {
			if p.Stats().Up != n {
				return false
			}
		}
		return true
	})
	return f
}

// TestPlaceForwarding: a client that places a file's blocks (Place) over
// members that forward to the owner (Router) asks each member for an even
// share of them (at most one block above), while the store still sees each
// block once, read by its owner; with the owner of some blocks down, the
// member asked reads them from the store itself, still once.
func TestPlaceForwarding(t *testing.T) {
	all := storetest.Blocks(13, 300, 4096)
	f := newForwarding(t, 3, storetest.NewMem(all...))
	s, err := Open(context.Background(), f.spec, Options{
		Client:        httpstore.ClientOptions{Token: "tok", RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond},
		ProbeInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetBalance(true)
	members := strings.Split(f.spec, ",")
	locs := func(blocks [][]byte) []blockstore.Locator {
		var out []blockstore.Locator
		for _, b := range blocks {
			out = append(out, blockstore.LocatorOf(b))
		}
		return out
	}
	storeReads := func(blocks [][]byte) {
		t.Helper()
		for _, b := range blocks {
			h := blockstore.Sum(b)
			var n int64
			for _, c := range f.counts {
				n += c.GetsOf(h)
			}
			if n != 1 {
				t.Fatalf("block %v read %d times from the store, want 1", h, n)
			}
		}
	}

	phase := all[:200]
	s.Place(locs(phase))
	getAll(t, s, phase)
	storeReads(phase)
	owned := make([]int, 3)
	for _, b := range phase {
		o := Owner(members, blockstore.Sum(b))
		owned[o]++
		if f.counts[o].GetsOf(blockstore.Sum(b)) != 1 {
			t.Fatalf("block %v not read by its owner %d", blockstore.Sum(b), o)
		}
	}
	st := s.Stats()
	moved := 0
	for i, m := range st.Members {
		if m.Requests > int64(len(phase)/3+1) {
			t.Errorf("member %d asked for %d blocks; want at most %d (an even share of %d, plus one)", i, m.Requests, len(phase)/3+1, len(phase))
		}
		moved += max(0, owned[i]-int(m.Requests))
	}
	t.Logf("owned %v, asked %v requests; %d blocks moved", owned, []int64{st.Members[0].Requests, st.Members[1].Requests, st.Members[2].Requests}, moved)
	if moved == 0 {
		t.Fatal("no block moved off its owner: the test shows nothing")
	}

	f.sw[0].down.Store(true)
	phase = all[200:]
	s.Place(locs(phase))
	getAll(t, s, phase)
	storeReads(phase)
	for _, b := range phase {
		if n := f.counts[0].GetsOf(blockstore.Sum(b)); n != 0 {
			t.Fatalf("member 0, down, read block %v", blockstore.Sum(b))
		}
	}
}

// TestNewRouterNames: a router must be a member of its peers.
func TestNewRouterNames(t *testing.T) {
	c := newCluster(t, 2, storetest.NewMem())
	peers, err := Open(context.Background(), c.urls[0]+"#a,"+c.urls[1]+"#b", Options{Client: httpstore.ClientOptions{Token: "tok"}})
	if err != nil {
		t.Fatal(err)
	}
	defer peers.Close()
	if _, err := NewRouter(storetest.NewMem(), peers, "c"); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("a router not among its peers: %v", err)
	}
}
