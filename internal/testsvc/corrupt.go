package testsvc

import (
	"bytes"
	"os"
	"testing"
)

// CorruptInPlace flips a byte in the middle of file (a block of a
// directory store: read-only, so it is made writable first) keeping its
// size, which a content-addressed put of the block leaves as it is, and
// returns its bytes before and after.
func CorruptInPlace(t testing.TB, file string) (good, bad []byte) {
	t.Helper()
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad = bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, bad, 0o444); err != nil {
		t.Fatal(err)
	}
	return good, bad
}
