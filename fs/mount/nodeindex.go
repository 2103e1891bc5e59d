package mount

// posIndex finds a node record's position by its nodeid: an open-addressed
// table (linear probing) of 8-byte slots, each a record's position and 32
// bits of its nodeid's hash, the nodeid itself being read from the record
// when those bits match. A Go map of nodeid to position costs 16 bytes a
// slot and doubles as it grows, so right after a doubling (which a mount
// of 1M files meets) half its slots are empty; this one grows by half and
// stays between a half and three quarters full.
type posIndex struct {
	slots []uint64 // hash<<32 | position+1 of a record; 0 for an empty slot
	count int
}

// nodeidOf is the nodeid of the record at a position.
type nodeidOf func(pos uint32) uint64

// hash32 mixes a nodeid: nodeids are hashes, but the ones a collision
// moves to are consecutive.
func hash32(nodeid uint64) uint64 { return (nodeid * 0x9e3779b97f4a7c15) >> 32 }

// home is the slot where the probe sequence of hash h starts.
func (x *posIndex) home(h uint64) int { return int(h * uint64(len(x.slots)) >> 32) }

func (x *posIndex) next(i int) int {
	if i++; i == len(x.slots) {
		return 0
	}
	return i
}

// slot returns where nodeid is indexed, or the empty slot ending its
// probe sequence.
func (x *posIndex) slot(nodeid uint64, key nodeidOf) int {
	h := hash32(nodeid)
	i := x.home(h)
	for s := x.slots[i]; s != 0; s = x.slots[i] {
		if s>>32 == h && key(uint32(s)-1) == nodeid {
			break
		}
		i = x.next(i)
	}
	return i
}

// get returns the position of nodeid's record.
func (x *posIndex) get(nodeid uint64, key nodeidOf) (uint32, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	s := x.slots[x.slot(nodeid, key)]
	return uint32(s) - 1, s != 0
}

// set indexes the record at pos under nodeid, which is not indexed yet.
func (x *posIndex) set(nodeid uint64, pos uint32) {
	if (x.count+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	x.place(hash32(nodeid)<<32 | uint64(pos+1))
	x.count++
}

// place puts slot value s in the first empty slot from its home.
func (x *posIndex) place(s uint64) {
	i := x.home(s >> 32)
	for x.slots[i] != 0 {
		i = x.next(i)
	}
	x.slots[i] = s
}

// grow rehashes into half as many slots again.
func (x *posIndex) grow() {
	old := x.slots
	x.slots = make([]uint64, max(16, len(old)+len(old)/2))
	for _, s := range old {
		if s != 0 {
			x.place(s)
		}
	}
}

// del removes nodeid from the index, moving back the entries after it
// that its slot had pushed on (no tombstones to accumulate).
func (x *posIndex) del(nodeid uint64, key nodeidOf) {
	if len(x.slots) == 0 {
		return
	}
	i := x.slot(nodeid, key)
	if x.slots[i] == 0 {
		return
	}
	x.slots[i] = 0
	x.count--
	for j := x.next(i); x.slots[j] != 0; j = x.next(j) {
		h := x.home(x.slots[j] >> 32)
		// The entry at j may fill the hole at i if its probe sequence
		// (from h to j, cyclically) passes through i.
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			x.slots[i], x.slots[j] = x.slots[j], 0
			i = j
		}
	}
}
