package chunker

// gearSeed fixes the gear table. The table decides every cut point, so
// CHANGING THE SEED OR THE GENERATOR BELOW CHANGES EVERY CHUNK BOUNDARY and
// with it every block hash in every store: existing data then no longer
// dedups against new imports. TestGolden pins boundaries to catch this.
const gearSeed = 0x626c6f636b667321 // "blockfs!"

// gear is the random byte->uint64 table of the gear hash; gear1 holds the
// same values shifted left by one, so that the loop can roll two bytes per
// shift of the running hash (see scan).
var gear, gear1 [256]uint64

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
	}
}
