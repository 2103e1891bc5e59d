package mount

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
)

// TestNodeTableCollision: a second identity whose hash lands on a held
// nodeid gets the next free one, and each is found again as itself.
func TestNodeTableCollision(t *testing.T) {
	tab := newNodeTable()
	a, b := ident{ino: 1 << 40, gen: 1}, ident{ino: 1 << 40, gen: 2}
	na, nb := tab.add(rootIno, "a", a), tab.add(rootIno, "b", b)
	if na != a.ino || nb != a.ino+1 {
		t.Fatalf("nodeids %d and %d, want %d and %d", na, nb, a.ino, a.ino+1)
	}
	if got, ok := tab.lookup(b); !ok || got != nb {
		t.Errorf("lookup of the second identity: %d %v, want %d", got, ok, nb)
	}
	if _, p, gen, ok := tab.resolve(nil, nb); !ok || p != "/b" || gen != 2 || !tab.holds(nb, b) || tab.holds(na, b) {
		t.Errorf("resolve(%d) = %q gen %d %v, want /b gen 2", nb, p, gen, ok)
	}
}

// TestNodeTableForget: a record goes with the kernel's last reference,
// but not before its children's, and a hard link's record follows the
// latest name the kernel was given.
func TestNodeTableForget(t *testing.T) {
	tab := newNodeTable()
	dir := tab.add(rootIno, "d", ident{ino: 1 << 41, gen: 7})
	file := tab.add(dir, "f", ident{ino: 1 << 42, gen: 8})
	tab.add(dir, "f", ident{ino: 1 << 42, gen: 8}) // READDIRPLUS again
	tab.forget(dir, 1)
	if _, p, _, ok := tab.resolve(nil, file); !ok || p != "/d/f" {
		t.Fatalf("with its parent forgotten, the file resolves to %q %v", p, ok)
	}
	tab.forget(file, 1)
	if tab.size() != 3 {
		t.Fatalf("after one of two forgets of the file the table holds %d, want 3", tab.size())
	}
	tab.forget(file, 1)
	if tab.size() != 1 {
		t.Fatalf("after the last forget the table holds %d records, want only the root's", tab.size())
	}

	d2 := tab.add(rootIno, "e", ident{ino: 1 << 43, gen: 9})
	link := tab.add(rootIno, "x", ident{ino: 1 << 44, gen: 10})
	if again := tab.add(d2, "y", ident{ino: 1 << 44, gen: 10}); again != link {
		t.Fatalf("a hard link's second name got nodeid %d, want %d", again, link)
	}
	if _, p, _, _ := tab.resolve(nil, link); p != "/e/y" {
		t.Errorf("the hard link resolves to %q, want its latest name /e/y", p)
	}
	tab.forget(d2, 1)
	tab.forget(link, 2)
	if tab.size() != 1 {
		t.Errorf("after every forget the table holds %d records", tab.size())
	}
}

// BenchmarkNodeTableMemory fills a table as a walk of a million files
// (1000 a directory, 8-byte names) would, and reports the live heap per
// record: the mount's cost for each name the kernel holds.
func BenchmarkNodeTableMemory(b *testing.B) {
	for _, n := range []int{200_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				tab := newNodeTable()
				var dir uint64
				for i := range n {
					if i%1000 == 0 {
						dir = tab.add(rootIno, fmt.Sprintf("d%05d", i/1000), ident{ino: uint64(i)<<20 | 1<<40, gen: uint64(i)})
					}
					tab.add(dir, fmt.Sprintf("f%07d", i), ident{ino: uint64(i)*0x9e3779b97f4a7c15 | 1<<50, gen: uint64(i) + 1})
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(tab.size()), "B/record")
			}
		})
	}
}

// TestPosIndexAgainstMap drives the index with random inserts and deletes,
// consecutive nodeids among them (as collisions make), and checks every
// answer against a map: in many small tables (where probe sequences wrap
// around the end) and in one large one.
func TestPosIndexAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	deletes := 0
	for range 3000 {
		deletes += checkPosIndex(t, rng, 40, 1)
	}
	deletes += checkPosIndex(t, rng, 200_000, 1000)
	if deletes < 20_000 {
		t.Fatalf("only %d deletes", deletes)
	}
}

// checkPosIndex runs steps random operations on a new index, comparing it
// with a map every checkEvery steps; it returns how many were deletes.
func checkPosIndex(t *testing.T, rng *rand.Rand, steps, checkEvery int) (deletes int) {
	t.Helper()
	var x posIndex
	var ids []uint64 // the nodeid of each position
	key := func(pos uint32) uint64 { return ids[pos] }
	want := map[uint64]uint32{}
	for step := range steps {
		switch op := rng.IntN(3); {
		case op == 0 && len(ids) > 0:
			id := ids[rng.IntN(len(ids))]
			if _, ok := want[id]; ok {
				x.del(id, key)
				delete(want, id)
				deletes++
			}
		default:
			id := rng.Uint64()
			if op == 1 && len(ids) > 0 {
				id = ids[rng.IntN(len(ids))] + 1 // a neighbour
			}
			if _, ok := want[id]; !ok {
				ids = append(ids, id)
				x.set(id, uint32(len(ids)-1))
				want[id] = uint32(len(ids) - 1)
			}
		}
		if step%checkEvery == 0 {
			for id, pos := range want {
				if got, ok := x.get(id, key); !ok || got != pos {
					t.Fatalf("step %d: get(%d) = %d %v, want %d", step, id, got, ok, pos)
				}
			}
			if x.count != len(want) {
				t.Fatalf("step %d: count %d, want %d", step, x.count, len(want))
			}
		}
		if probe := rng.Uint64(); want[probe] == 0 {
			if _, found := x.get(probe, key); found {
				t.Fatalf("step %d: get of an absent nodeid found it", step)
			}
		}
	}
	return deletes
}
