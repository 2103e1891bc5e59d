package objects

import (
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Applying whole parsed segments at once (replay, Ingest).
//
// One record at a time, a large log spends its time on cache and TLB misses:
// every insert into a map of millions of entries touches a random place in
// it. Instead, the records are partitioned by the shard of their key (a
// counting sort per segment, in parallel), and the shards are built in
// parallel, one at a time per core: each shard's map is small (see
// shardsFor), so its inserts stay in cache. Per key, records are applied
// in the same order as one at a time (objects in log order, then
// tombstones), so the outcome is the same; and since a key's records all go
// to one shard, shards need no locking.
//
// The ordered indexes are then updated from one pass in log order over the
// winning records (nearly sorted when an importer wrote them), by bulk load
// or merge rather than one insert per item.

// sobj is an object record as partition lays it out for its shard (no
// pointers, like robj).
type sobj struct {
	robj
	j uint32 // index in segParse.objs
}

// partition groups the records by shard
// (a stable counting sort): the objects of shard s are
// p.sorted[p.objAt[s]:p.objAt[s+1]], copied so that the shard's worker reads
// them sequentially; the tombstones are p.tombs[p.tombIdx[p.tombAt[s]:...]]
// (few, so not copied).
func (p *segParse) partition(nsh int) {
	p.dead = make([]bool, len(p.objs))
	if len(p.objs) > 0 {
		at := make([]uint32, nsh+1)
		for i := range p.objs {
			at[shardIndex(p.objs[i].h, nsh)+1]++
		}
		for s := range nsh {
			at[s+1] += at[s]
		}
		pos := slices.Clone(at[:nsh])
		p.sorted = make([]sobj, len(p.objs))
		for i := range p.objs {
			o := &p.objs[i]
			s := shardIndex(o.h, nsh)
			p.sorted[pos[s]] = sobj{*o, uint32(i)}
			pos[s]++
		}
		p.objAt = at
	}
	if len(p.tombs) > 0 {
		hs := make([]uint64, len(p.tombs))
		at := make([]uint32, nsh+1)
		for i := range p.tombs {
			hs[i] = p.tombs[i].h
			at[shardIndex(hs[i], nsh)+1]++
		}
		p.tombAt, p.tombIdx = partitionBy(hs, at, nsh)
	}
}

// partitionBy returns the indexes of hs sorted (stably) by shard, and where
// each shard's run starts; at[s+1] holds shard s's count.
func partitionBy(hs []uint64, at []uint32, nsh int) ([]uint32, []uint32) {
	for s := range nsh {
		at[s+1] += at[s]
	}
	pos := slices.Clone(at[:nsh])
	idx := make([]uint32, len(hs))
	for i, h := range hs {
		s := shardIndex(h, nsh)
		idx[pos[s]] = uint32(i)
		pos[s]++
	}
	return at, idx
}

func (p *segParse) shardObjs(s int) []sobj {
	if p.objAt == nil {
		return nil
	}
	return p.sorted[p.objAt[s]:p.objAt[s+1]]
}

func (p *segParse) shardTombs(s int) []uint32 {
	if p.tombAt == nil {
		return nil
	}
	return p.tombIdx[p.tombAt[s]:p.tombAt[s+1]]
}

// preDel is an entry that was live before the batch and that the batch
// replaced or killed: its ordered index items go, and its bytes stop being
// live.
type preDel struct {
	key string
	e   pentry
}

// parallel runs fn(0..n-1) on up to workers goroutines (inline if 1).
func parallel(n, workers int, fn func(worker, i int)) {
	workers = min(workers, n)
	if workers <= 1 {
		for i := range n {
			fn(0, i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(w, i)
			}
		}()
	}
	wg.Wait()
}

// applyBatch applies the records of results, as applyObject and
// applyTombstone would one at a time (all objects in log order, then all
// tombstones). replay: the indexes are empty (Open), and the ordered ones
// are built from scratch; otherwise the segments of results are new to the
// index (Ingest), so an entry pointing into another segment predates the
// batch. Callers hold Log.mu for writing.
func (l *Log) applyBatch(results []segParse, replay bool) {
	total := 0
	for i := range results {
		total += len(results[i].objs) + len(results[i].tombs)
	}
	workers := runtime.GOMAXPROCS(0)
	if total < 4096 {
		workers = 1
	}
	nsh := len(l.shards)
	parallel(len(results), workers, func(_, i int) {
		results[i].partition(nsh)
	})
	batchSeg := func(seg uint32) bool {
		for i := range results {
			if results[i].s.id == seg {
				return true
			}
		}
		return false
	}
	pre := make([][]preDel, workers)
	parallel(nsh, workers, func(w, s int) {
		l.applyShard(s, results, replay, batchSeg, &pre[w])
	})
	nslots := l.accountWinners(results, replay)
	built, items := winnerItems(results, nslots, replay)
	if replay {
		l.slots = built
		return
	}
	// Entries from before the batch that it replaced or killed: their items
	// go first (a replacement may put some of them back), then the winners'
	// items come in.
	for _, ps := range pre {
		for _, p := range ps {
			l.account(p.e.seg, -int64(p.e.size))
			l.removeItems(p.key, p.e.skeys)
		}
	}
	for i, its := range items {
		if len(its) > 0 {
			l.slot(i).insertMany(its)
		}
	}
}

// accountWinners adds the bytes of the winning records (those not marked
// dead by applyShard) to their segments' live bytes, and returns the number
// of ordered index slots they use (1 + the highest non-empty secondary key).
func (l *Log) accountWinners(results []segParse, replay bool) int {
	nslots := 1
	for i := range results {
		r := &results[i]
		var live int64
		for j := range r.objs {
			o := &r.objs[j]
			if r.dead[j] {
				continue
			}
			live += int64(o.size)
			if int(o.nsk) >= nslots {
				sk := r.skeys(o)
				for k := len(sk) - 1; k >= nslots-1; k-- {
					if sk[k] != "" {
						nslots = max(nslots, k+2)
						break
					}
				}
			}
		}
		if replay {
			r.s.live += live
		} else {
			l.account(r.s.id, live)
		}
	}
	return nslots
}

// winnerItems collects the ordered index items of the winning records in
// log order, one goroutine per slot. With build (replay), it returns each
// slot's index built from scratch; otherwise each slot's items, sorted, for
// Ingest to merge in.
func winnerItems(results []segParse, nslots int, build bool) (built []*ordered, items [][]item) {
	if build {
		built = make([]*ordered, nslots)
	} else {
		items = make([][]item, nslots)
	}
	var wg sync.WaitGroup
	for k := range nslots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b orderedBuilder
			for i := range results {
				r := &results[i]
				for j := range r.objs {
					if r.dead[j] {
						continue
					}
					o := &r.objs[j]
					if k == 0 {
						b.add(item{key: r.key(o.key)})
					} else if k <= int(o.nsk) {
						if sk := r.skeys(o)[k-1]; sk != "" {
							b.add(item{sk, r.key(o.key)})
						}
					}
				}
			}
			if build {
				built[k] = b.build()
			} else {
				items[k] = b.items()
			}
		}()
	}
	wg.Wait()
	return built, items
}

// applyShard applies the records of shard s (worker-private while
// applyBatch runs): objects in log order, then tombstones, marking each
// object record that does not end up live (segParse.dead). Entries from
// before the batch that are replaced or killed go to *pre.
func (l *Log) applyShard(s int, results []segParse, replay bool, batchSeg func(uint32) bool, pre *[]preDel) {
	sh := &l.shards[s]
	n := 0
	for i := range results {
		n += len(results[i].shardObjs(s))
	}
	if n >= 64 && n > len(sh.prim)/2 {
		// Size the map once instead of growing it step by step.
		m := make(map[uint64]pentry, len(sh.prim)+n)
		maps.Copy(m, sh.prim)
		sh.prim = m
	}
	old := func(e pentry) bool { return !replay && !batchSeg(e.seg) }
	// dup: a record of this shard lost, was replaced or killed, so which
	// ones won must be looked up.
	dup := false
	for i := range results {
		r := &results[i]
		id := r.s.id
		for k := range r.shardObjs(s) {
			o := &r.shardObjs(s)[k]
			e := pentry{key: r.key(o.key), ver: o.ver, seg: id, off: o.off, size: o.size, crc: o.crc, skeys: r.skeys(&o.robj)}
			cur, had, in := sh.putObject(o.h, e, l.pruneTombs)
			if had || !in {
				dup = true
			}
			if in && had && old(cur) {
				*pre = append(*pre, preDel{cur.key, cur})
			}
		}
	}
	for i := range results {
		r := &results[i]
		for _, j := range r.shardTombs(s) {
			t := &r.tombs[j]
			key := r.key(t.key)
			if cur, ok := sh.killObject(key, t.h, t.killed); ok {
				dup = true
				if old(cur) {
					*pre = append(*pre, preDel{key, cur})
				}
			}
		}
	}
	if !dup {
		return
	}
	for i := range results {
		r := &results[i]
		for k := range r.shardObjs(s) {
			o := &r.shardObjs(s)[k]
			e, ok := sh.find(r.key(o.key), o.h)
			r.dead[o.j] = !ok || e.seg != r.s.id || e.off != o.off
		}
	}
}
