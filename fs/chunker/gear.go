package chunker

// gearSeed fixes the gear table. The table decides every cut point, so
// CHANGING THE SEED OR THE GENERATOR BELOW CHANGES EVERY CHUNK BOUNDARY and
// with it every block hash in every store: existing data then no longer
// dedups against new imports. TestGolden pins boundaries to catch this.
const gearSeed = 0x626c6f636b667321 // "blockfs!"

// gear is the random byte->uint64 table of the gear hash; gear1..gear3 are
// the same values shifted left by 1..3, used by the unrolled loop so that
// four bytes cost one shift of the running hash instead of four.
var gear, gear1, gear2, gear3 [256]uint64

func init() {
	// splitmix64: tiny, well mixed, and trivially reproducible anywhere.
	s := uint64(gearSeed)
	for i := range gear {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		gear[i] = z ^ z>>31
		gear1[i] = gear[i] << 1
		gear2[i] = gear[i] << 2
		gear3[i] = gear[i] << 3
	}
}
