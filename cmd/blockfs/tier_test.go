package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/s3"
	"blockfs/blockstore/storeurl"
	"blockfs/blockstore/tier"
	"blockfs/fs/volume"
	"blockfs/internal/testsvc"
)

// tierMiB is the size of the cold file the tier tests read: big enough for
// every member to own many blocks, small enough for a shared 2-core machine.
const tierMiB = 32

// tierFile writes size bytes (a pattern of seed), imports them as name
// into spec and returns their SHA-256 and the unique blocks the import
// stored.
func tierFile(t *testing.T, m *testsvc.MinIO, spec string, seed, size int, name string) (string, int64) {
	t.Helper()
	sum, data, meta := tierFileSplit(t, m, spec, seed, size, name)
	return sum, data + meta
}

// tierFileSplit is tierFile, with the unique blocks split into data and
// metadata blocks.
func tierFileSplit(t *testing.T, m *testsvc.MinIO, spec string, seed, size int, name string) (sum string, data, meta int64) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src.bin")
	bytes := make([]byte, size)
	for i := range bytes {
		bytes[i] = byte(i*seed + i/4093 + seed)
	}
	if err := os.WriteFile(src, bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(bytes)
	// Fixed 512 KiB blocks: many per file, so every member owns a share.
	st := importJSON(t, s3Env(m, m.Endpoint()), "--store", spec, "--fixed", "--chunk-avg", "512KiB", src, name)
	return hex.EncodeToString(h[:]), int64(st["new_blocks"]), int64(st["meta_blocks"])
}

// readEverywhere runs readers concurrent sha256sums of name on every
// mount; each wrong answer or read error is returned.
func readEverywhere(mnts []string, readers int, name, want string) []error {
	var wg sync.WaitGroup
	errs := make(chan error, len(mnts)*readers)
	for _, mnt := range mnts {
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := exec.Command("sha256sum", filepath.Join(mnt, name)).CombinedOutput()
				if err != nil {
					errs <- fmt.Errorf("%s: %v: %s", mnt, err, out)
				} else if got := strings.Fields(string(out))[0]; got != want {
					errs <- fmt.Errorf("%s: wrong bytes", mnt)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

func mountAll(t *testing.T, store string, n int) []string {
	t.Helper()
	var mnts []string
	for range n {
		mnt := t.TempDir()
		startMount(t, store, mnt, "--refresh", "0")
		mnts = append(mnts, mnt)
	}
	return mnts
}

// owned counts, for each of urls, the blocks of the store (listed from
// MinIO) it owns while all are up, leaving out unread (the metadata
// segments, see segmentBlocks).
func owned(t *testing.T, m *testsvc.MinIO, bucket, prefix string, urls []string, unread map[blockstore.Hash]bool) (counts []int64, total int64) {
	t.Helper()
	st, err := s3.Open(context.Background(), bucket, prefix, s3Config(m))
	if err != nil {
		t.Fatal(err)
	}
	counts = make([]int64, len(urls))
	err = st.List(context.Background(), func(loc blockstore.Locator) error {
		if unread[loc.Hash] {
			return nil
		}
		counts[tier.Owner(urls, loc.Hash)]++
		total++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return counts, total
}

// checkSharded asserts that each serve fetched from its store exactly the
// blocks it owns, and returns the ref reads they passed to the store (the
// marker, answered by each serve itself, is not one).
func checkSharded(t *testing.T, what string, urls []string, own []int64) (refGets int64) {
	t.Helper()
	for i, u := range urls {
		pool, h := serverStats(t, u)
		if pool.Fetches != own[i] {
			t.Errorf("%s %d (%s) fetched %d blocks, owns %d", what, i, u, pool.Fetches, own[i])
		}
		refGets += h.RefGets - h.FixedRefGets
	}
	return refGets
}

// TestTierHerd: 3 serves over the real MinIO, 4 mount processes with 2
// readers each of a cold file, through the tier of the 3: every byte is
// right, MinIO serves one GET per unique block (plus the ref reads the
// serves passed on), and each serve fetched exactly the blocks it owns.
func TestTierHerd(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	spec := "s3://" + bucket + "/tier"
	want, unique := tierFile(t, m, spec, 7, tierMiB<<20, "/input.bin")
	unread := segmentBlocks(t, spec, s3Config(m)) // read before MinIO's GETs are counted
	unique -= int64(len(unread))
	before := m.Requests(t, "getobject")
	var urls []string
	for range 3 {
		_, u := startServe(t, s3Env(m, m.Endpoint()), "--store", spec)
		urls = append(urls, u)
	}
	mnts := mountAll(t, strings.Join(urls, ","), 4)
	for _, err := range readEverywhere(mnts, 2, "input.bin", want) {
		t.Error(err)
	}
	own, total := owned(t, m, bucket, "tier", urls, unread)
	if total != unique {
		t.Fatalf("MinIO lists %d blocks, the import stored %d", total, unique)
	}
	refGets := checkSharded(t, "serve", urls, own)
	// Each serve also reads the store's format marker once, at start.
	markers := int64(len(urls))
	wantGets := before + unique + refGets + markers
	if got := m.WaitRequests(t, "getobject", wantGets); got != wantGets {
		t.Errorf("MinIO served %d GETs, want %d (%d blocks + %d ref reads + %d markers)", got-before, wantGets-before, unique, refGets, markers)
	}
	t.Logf("3 serves, 4 mounts x 2 readers, %d MiB: %d unique blocks owned %v, MinIO GETs %d", tierMiB, unique, own, m.Requests(t, "getobject")-before)
}

// pollUntil calls cond every 10 ms until it holds, failing after d.
func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// memberState reads a mount's view of one tier member from its stats.
func memberState(t *testing.T, mnt, url string) string {
	t.Helper()
	out, err := exec.Command(blockfsBin, "stats", "--json", mnt).Output()
	if err != nil {
		t.Fatalf("stats %s: %v", mnt, err)
	}
	var st struct {
		Backend tier.Stats `json:"backend"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	for _, ms := range st.Backend.Members {
		if ms.URL == url {
			return ms.State
		}
	}
	t.Fatalf("mount %s has no member %s: %s", mnt, url, out)
	return ""
}

// TestTierKillServe: 3 serves (MinIO behind 20 ms), 4 mounts x 2 readers
// of a cold file; one serve is SIGKILLed mid-read. Every reader finishes
// with the right bytes and no EIO. The serve restarted on its address is
// probed back up by every mount and serves its share of the next cold file.
func TestTierKillServe(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/kill"
	want1, _ := tierFile(t, m, spec, 11, tierMiB<<20, "/one.bin")
	want2, _ := tierFile(t, m, spec, 13, tierMiB<<20, "/two.bin")
	proxy := testsvc.StartProxy(t, m.Host())
	proxy.Latency(20 * time.Millisecond)
	env := s3Env(m, proxy.Endpoint())
	var urls []string
	var cmds []*exec.Cmd
	for range 3 {
		c, u := startServe(t, env, "--store", spec)
		urls, cmds = append(urls, u), append(cmds, c)
	}
	mnts := mountAll(t, strings.Join(urls, ","), 4)
	victim, err := httpstore.Open(context.Background(), urls[0], httpstore.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()

	done := make(chan []error, 1)
	go func() { done <- readEverywhere(mnts, 2, "one.bin", want1) }()
	pollUntil(t, time.Minute, "serve 0 serving blocks", func() bool {
		var st struct {
			HTTP httpstore.ServerStats `json:"http"`
		}
		b, err := victim.ServerStats(context.Background())
		return err == nil && json.Unmarshal(b, &st) == nil && st.HTTP.BlockGets >= 8
	})
	select {
	case <-done:
		t.Fatal("the readers finished before the serve was killed: nothing shown")
	default:
	}
	cmds[0].Process.Kill()
	cmds[0].Wait()
	for _, err := range <-done {
		t.Error(err)
	}

	// Back on its address: every mount's prober marks it up, and the next
	// cold file's blocks it owns are read through it again.
	addr := strings.TrimPrefix(urls[0], "http://")
	c := serveCmd("--store", spec, "--listen", addr)
	c.Env = env
	if u := startServeCmd(t, c); u != urls[0] {
		t.Fatalf("restarted at %s, want %s", u, urls[0])
	}
	for _, mnt := range mnts {
		pollUntil(t, 30*time.Second, "the restarted serve up in "+mnt, func() bool { return memberState(t, mnt, urls[0]) == "up" })
	}
	for _, err := range readEverywhere(mnts, 2, "two.bin", want2) {
		t.Error(err)
	}
	if _, h := serverStats(t, urls[0]); h.BlockGets == 0 {
		t.Error("the restarted serve answered no block GET of the next file")
	} else {
		t.Logf("restarted serve: %d block GETs for the second file", h.BlockGets)
	}
}

// TestTierLayers: 2 site serves over MinIO, 2 rack serves each reading
// from the tier of the 2 sites, 2 mounts x 2 readers on the tier of the 2
// racks. MinIO still serves one GET per block (plus ref reads), and at each
// layer every serve fetched exactly the blocks it owns.
func TestTierLayers(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	spec := "s3://" + bucket + "/layers"
	want, unique := tierFile(t, m, spec, 17, tierMiB<<20, "/input.bin")
	unread := segmentBlocks(t, spec, s3Config(m))
	unique -= int64(len(unread))
	before := m.Requests(t, "getobject")
	var sites, racks []string
	for range 2 {
		_, u := startServe(t, s3Env(m, m.Endpoint()), "--store", spec)
		sites = append(sites, u)
	}
	for range 2 {
		_, u := startServe(t, os.Environ(), "--store", strings.Join(sites, ","))
		racks = append(racks, u)
	}
	mnts := mountAll(t, strings.Join(racks, ","), 2)
	for _, err := range readEverywhere(mnts, 2, "input.bin", want) {
		t.Error(err)
	}
	siteOwn, _ := owned(t, m, bucket, "layers", sites, unread)
	rackOwn, _ := owned(t, m, bucket, "layers", racks, unread)
	refGets := checkSharded(t, "site", sites, siteOwn)
	checkSharded(t, "rack", racks, rackOwn)
	// Each site serve also reads the store's format marker once, at start.
	markers := int64(len(sites))
	wantGets := before + unique + refGets + markers
	if got := m.WaitRequests(t, "getobject", wantGets); got != wantGets {
		t.Errorf("MinIO served %d GETs, want %d (%d blocks + %d ref reads + %d markers)", got-before, wantGets-before, unique, refGets, markers)
	}
}

// tierBackend reads a mount's tier stats (its backend) from stats --json.
func tierBackend(t *testing.T, mnt string) tier.Stats {
	t.Helper()
	return tierMountStats(t, mnt).Backend
}

// tierMount is what `blockfs stats --json` says of a mount on a tier: its
// health and its backend, from one snapshot.
type tierMount struct {
	Healthy bool       `json:"healthy"`
	Reason  string     `json:"reason"`
	Backend tier.Stats `json:"backend"`
}

func tierMountStats(t *testing.T, mnt string) tierMount {
	t.Helper()
	out, err := exec.Command(blockfsBin, "stats", "--json", mnt).Output()
	if err != nil {
		t.Fatalf("stats %s: %v %s", mnt, err, stderrOf(err))
	}
	var st tierMount
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return st
}

// TestTierStoreOutage: 2 serves over MinIO behind a proxy, a mount on
// their tier reads a file (now in the serves' pools); then the MinIO link
// goes down. The mount still lists and reads the file, a mount started
// during the outage does too (the tier answers the ref with its last value
// and the blocks from its pools), and both the serves' and the mounts'
// stats say the store is down; once the link is back, a ref read clears it.
func TestTierStoreOutage(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/outage"
	want, _ := tierFile(t, m, spec, 19, 8<<20, "/held.bin")
	proxy := testsvc.StartProxy(t, m.Host())
	env := s3Env(m, proxy.Endpoint())
	var urls, metricsURLs []string
	for range 2 {
		cmd := serveCmd("--store", spec, "--metrics", "127.0.0.1:0")
		cmd.Env = env
		u, lines := startServeLines(t, cmd)
		urls, metricsURLs = append(urls, u), append(metricsURLs, metricsURL(t, lines))
	}
	for i, u := range urls {
		wantServeHealth(t, u, metricsURLs[i], true)
	}
	store := strings.Join(urls, ",")
	first := t.TempDir()
	startMount(t, store, first, "--refresh", "200ms")
	for _, err := range readEverywhere([]string{first}, 1, "held.bin", want) {
		t.Fatal(err)
	}
	fetched := int64(0)
	for _, u := range urls {
		pool, _ := serverStats(t, u)
		fetched += pool.Fetches
	}

	proxy.Down()
	// The mount's refresh reads the ref through the tier: each serve that
	// owns it answers with its last value, flagged.
	pollUntil(t, time.Minute, "the mount to see the store down", func() bool { return tierBackend(t, first).StoreDown })
	second := t.TempDir()
	startMount(t, store, second, "--refresh", "200ms")
	for _, mnt := range []string{first, second} {
		entries, err := os.ReadDir(mnt)
		if err != nil || len(entries) != 1 || entries[0].Name() != "held.bin" {
			t.Fatalf("listing %s during the outage: %v %v", mnt, entries, err)
		}
	}
	for _, err := range readEverywhere([]string{first, second}, 2, "held.bin", want) {
		t.Error(err)
	}
	var stale int64
	var down int
	refetched := int64(0)
	for i, u := range urls {
		pool, h := serverStats(t, u)
		refetched += pool.Fetches
		stale += h.StaleRefs
		if h.StoreDown {
			down++
		}
		// A serve that saw its store fail says it is unhealthy (its
		// stats, `blockfs stats`, its metrics); one not asked since
		// the outage began knows nothing of it.
		wantServeHealth(t, u, metricsURLs[i], !h.StoreDown)
	}
	t.Logf("during the outage: %d of 2 serves store_down, %d stale ref answers, %d blocks fetched before and after", down, stale, fetched)
	if down == 0 || stale == 0 {
		t.Errorf("serves during the outage: %d say store_down, %d stale ref answers; want >0 of both", down, stale)
	}
	if refetched != fetched {
		t.Errorf("the serves fetched %d blocks before the outage, %d after: the reads did not all come from their pools", fetched, refetched)
	}
	for _, mnt := range []string{first, second} {
		st := tierMountStats(t, mnt)
		if b := st.Backend; !b.StoreDown || b.StaleRefs == 0 || b.Up != 2 {
			t.Errorf("mount %s during the outage: %+v; want store_down, stale refs, both members up", mnt, b)
		}
		if st.Healthy || st.Reason != blockstore.ReasonStoreDown {
			t.Errorf("mount %s during the outage: healthy %v %q; want false, %q", mnt, st.Healthy, st.Reason, blockstore.ReasonStoreDown)
		}
	}

	proxy.Up()
	pollUntil(t, time.Minute, "the mount to see the store back", func() bool { return !tierBackend(t, first).StoreDown })
	// The ref's owner answered fresh: it is healthy again.
	for i, u := range urls {
		if _, h := serverStats(t, u); !h.StoreDown {
			wantServeHealth(t, u, metricsURLs[i], true)
		}
	}
	// Health follows the backend, with no metadata refresh error left.
	pollUntil(t, time.Minute, "the mount to be healthy again", func() bool {
		st := tierMountStats(t, first)
		return st.Healthy && st.Reason == ""
	})
}

// wantServeHealth checks that a serve says the same of its health
// everywhere: /v1/stats (healthy, reason), the human `blockfs stats` line
// and the blockfs_healthy gauge of its metrics.
func wantServeHealth(t *testing.T, url, metrics string, healthy bool) {
	t.Helper()
	out, err := exec.Command(blockfsBin, "stats", "--json", url).Output()
	if err != nil {
		t.Fatalf("stats %s: %v %s", url, err, stderrOf(err))
	}
	var st struct {
		Healthy bool   `json:"healthy"`
		Reason  string `json:"reason"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	human, err := exec.Command(blockfsBin, "stats", url).Output()
	if err != nil {
		t.Fatalf("stats %s: %v %s", url, err, stderrOf(err))
	}
	gauge := "blockfs_healthy 0\n"
	if healthy {
		gauge = "blockfs_healthy 1\n"
	}
	m := scrapeMetrics(t, metrics)
	switch {
	case st.Healthy != healthy:
		t.Errorf("serve %s: healthy %v (%q), want %v", url, st.Healthy, st.Reason, healthy)
	case !healthy && !strings.HasPrefix(st.Reason, httpstore.ReasonStoreFails):
		t.Errorf("serve %s: unhealthy because %q, want %q...", url, st.Reason, httpstore.ReasonStoreFails)
	case healthy && st.Reason != "":
		t.Errorf("serve %s: healthy with a reason %q", url, st.Reason)
	case strings.Contains(string(human), "UNHEALTHY") == healthy:
		t.Errorf("serve %s: blockfs stats says %q, want healthy %v", url, strings.SplitN(string(human), "\n", 2)[0], healthy)
	case !strings.Contains(m, gauge):
		t.Errorf("serve %s: metrics lack %q", url, gauge)
	}
}

// TestTierBalanced: 3 serves over the real MinIO, each a member of their
// tier (--peers), 4 mounts with --balance x 2 readers of a cold file:
// every byte is right, and MinIO still serves one GET per unique block
// (plus ref reads and markers) although the mounts asked some serves for
// blocks they do not own: those serves got them from the owners (their
// fetches add up to more than the unique blocks).
func TestTierBalanced(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	bucket := m.NewBucket(t)
	spec := "s3://" + bucket + "/tier"
	want, unique := tierFile(t, m, spec, 11, tierMiB<<20, "/input.bin")
	unread := segmentBlocks(t, spec, s3Config(m)) // read before MinIO's GETs are counted
	unique -= int64(len(unread))
	before := m.Requests(t, "getobject")
	var members, urls []string
	for i, a := range freeLoopbackAddrs(t, 3) {
		urls = append(urls, "http://"+a)
		members = append(members, fmt.Sprintf("http://%s#s%d", a, i))
	}
	peers := strings.Join(members, ",")
	for i, u := range urls {
		cmd := exec.Command(blockfsBin, "serve", "--listen", strings.TrimPrefix(u, "http://"), "--store", spec, "--peers", peers, "--peer-name", fmt.Sprintf("s%d", i))
		cmd.Env = s3Env(m, m.Endpoint())
		startServeCmd(t, cmd)
	}
	// Each serve reads the blocks of a peer it has not yet seen up from
	// MinIO itself; the mounts start once every serve sees all three.
	for _, u := range urls {
		peersUp(t, u, len(urls))
	}
	var mnts []string
	for range 4 {
		mnt := t.TempDir()
		startMount(t, peers, mnt, "--refresh", "0", "--balance")
		mnts = append(mnts, mnt)
	}
	for _, err := range readEverywhere(mnts, 2, "input.bin", want) {
		t.Error(err)
	}
	var fetches []int64
	var sumFetches, sumRefs int64
	for _, u := range urls {
		pool, h := serverStats(t, u)
		fetches = append(fetches, pool.Fetches)
		sumFetches, sumRefs = sumFetches+pool.Fetches, sumRefs+h.RefGets-h.FixedRefGets
	}
	markers := int64(len(urls))
	wantGets := before + unique + sumRefs + markers
	if got := m.WaitRequests(t, "getobject", wantGets); got != wantGets {
		t.Errorf("MinIO served %d GETs, want %d (%d blocks + %d ref reads + %d markers)", got-before, wantGets-before, unique, sumRefs, markers)
	}
	own, _ := owned(t, m, bucket, "tier", members, unread)
	t.Logf("%d unique blocks owned %v; serves fetched %v (from MinIO or their owner)", unique, own, fetches)
	if sumFetches <= unique {
		t.Errorf("serves fetched %d blocks for %d unique: no block was asked of a serve that does not own it", sumFetches, unique)
	}
	// --balance asks for a tier whose serves forward: on one serve, or on
	// serves without --peers, it is refused.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, blockfsBin, "mount", "--store", urls[0], "--balance", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--balance needs a read tier") {
		t.Errorf("mount --balance on one serve: %v %s", err, out)
	}
	_, plain := startServe(t, s3Env(m, m.Endpoint()), "--store", spec)
	out, err = exec.CommandContext(ctx, blockfsBin, "mount", "--store", urls[0]+","+plain, "--balance", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), plain+" does not forward") {
		t.Errorf("mount --balance on a serve without --peers: %v %s", err, out)
	}
}

// freeLoopbackAddrs returns n loopback addresses free a moment ago, for
// members that must know each other's addresses before they start.
func freeLoopbackAddrs(t *testing.T, n int) []string {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ln.Addr().String())
		ln.Close()
	}
	return out
}

// segmentBlocks are the blocks of the metadata segments of spec's current
// snapshot if it has metadata parts: mounts serve from the parts and never
// read the segments.
func segmentBlocks(t *testing.T, spec string, cfg s3.Config) map[blockstore.Hash]bool {
	t.Helper()
	unread, err := volume.UnreadBlocks(context.Background(), spec, storeurl.Options{S3: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	return unread
}

// peersUp waits until the member at url (a serve, or a mount's --serve)
// sees all n of its peers up, from its /v1/stats.
func peersUp(t *testing.T, url string, n int) {
	t.Helper()
	pollUntil(t, time.Minute, url+" to see its peers up", func() bool {
		resp, err := http.Get(url + "/v1/stats") // all of it: `blockfs stats` shows no peers
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Peers tier.Stats `json:"peers"`
		}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Peers.Up == n
	})
}

// TestPeersServePeers: one serve over the real MinIO, 4 mounts of it that
// are peers (--serve, --peers), 2 readers each of a cold file: every byte
// is right, and each data block crossed the serve's link once (the serve
// was asked for each once, by the mount that owns it; the others read it
// from that mount), where without peers each mount asks for every block.
// Only metadata, read at mount start before a mount has seen its peers,
// may come from the serve to more than one mount.
func TestPeersServePeers(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/peers"
	want, data, meta := tierFileSplit(t, m, spec, 13, tierMiB<<20, "/input.bin")
	_, serve := startServe(t, s3Env(m, m.Endpoint()), "--store", spec)
	addrs := freeLoopbackAddrs(t, 4)
	var members []string
	for i, a := range addrs {
		members = append(members, fmt.Sprintf("http://%s#n%d", a, i))
	}
	var mnts []string
	for i, a := range addrs {
		mnt := t.TempDir()
		startMount(t, serve, mnt, "--refresh", "0", "--serve", a, "--peers", strings.Join(members, ","), "--peer-name", fmt.Sprintf("n%d", i))
		mnts = append(mnts, mnt)
	}
	for _, a := range addrs {
		peersUp(t, "http://"+a, len(addrs))
	}
	for _, err := range readEverywhere(mnts, 2, "input.bin", want) {
		t.Error(err)
	}
	pool, _ := serverStats(t, serve)
	var fromPeers int64
	for _, a := range addrs {
		_, h := serverStats(t, "http://"+a)
		fromPeers += h.BlockGets
	}
	t.Logf("%d data + %d metadata blocks; the serve was asked for %d blocks (without peers: %d), the mounts asked each other for %d",
		data, meta, pool.Gets, int64(len(mnts))*(data+meta), fromPeers)
	if pool.Gets < data || pool.Gets > data+int64(len(mnts))*meta {
		t.Errorf("the serve was asked for %d blocks; want each of the %d data blocks once, plus at most %d metadata reads per mount", pool.Gets, data, meta)
	}
	if fromPeers < data {
		t.Errorf("the mounts asked each other for %d blocks; want more than the %d data blocks (each mount reads 3 in 4 of them from another)", fromPeers, data)
	}
}

// TestPeersKill: one serve (MinIO behind 20 ms), 3 peer mounts; one mount
// is SIGKILLed while the other two read a cold file (2 readers each),
// after they have begun reading through it. Every reader finishes with
// the right bytes and no EIO (the blocks the dead mount owned are read by
// the next-ranked member, at the latest the reader's own mount), and the
// survivors see it down.
func TestPeersKill(t *testing.T) {
	testsvc.RequireFUSE(t)
	m := testsvc.SharedMinIO(t)
	spec := "s3://" + m.NewBucket(t) + "/peerkill"
	want, _ := tierFile(t, m, spec, 17, tierMiB<<20, "/input.bin")
	proxy := testsvc.StartProxy(t, m.Host())
	proxy.Latency(20 * time.Millisecond)
	_, serve := startServe(t, s3Env(m, proxy.Endpoint()), "--store", spec)
	addrs := freeLoopbackAddrs(t, 3)
	var members []string
	for i, a := range addrs {
		members = append(members, fmt.Sprintf("http://%s#n%d", a, i))
	}
	var mnts []string
	var cmds []*exec.Cmd
	for i, a := range addrs {
		mnt := t.TempDir()
		c := startMount(t, serve, mnt, "--refresh", "0", "--serve", a, "--peers", strings.Join(members, ","), "--peer-name", fmt.Sprintf("n%d", i))
		mnts, cmds = append(mnts, mnt), append(cmds, c)
	}
	for _, a := range addrs {
		peersUp(t, "http://"+a, len(addrs))
	}
	victim := "http://" + addrs[2]
	done := make(chan []error, 1)
	go func() { done <- readEverywhere(mnts[:2], 2, "input.bin", want) }()
	pollUntil(t, time.Minute, "mount n2 serving its peers", func() bool {
		resp, err := http.Get(victim + "/v1/stats")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			HTTP httpstore.ServerStats `json:"http"`
		}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.HTTP.BlockGets >= 4
	})
	select {
	case <-done:
		t.Fatal("the readers finished before the mount was killed: nothing shown")
	default:
	}
	cmds[2].Process.Kill()
	cmds[2].Wait()
	exec.Command("umount", "-l", mnts[2]).Run() // the dead process's FUSE connection
	for _, err := range <-done {
		t.Error(err)
	}
	for _, a := range addrs[:2] {
		resp, err := http.Get("http://" + a + "/v1/stats")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Peers tier.Stats `json:"peers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.Peers.Members[2].State != "down" || st.Peers.Members[2].Failures == 0 {
			t.Errorf("mount at %s after the kill: peers %+v %v; want n2 down after a failure", a, st.Peers, err)
		}
	}
}

func s3Config(m *testsvc.MinIO) s3.Config {
	return s3.Config{Endpoint: m.Endpoint(), AccessKey: m.AccessKey(), SecretKey: m.SecretKey(), PathStyle: true}
}
