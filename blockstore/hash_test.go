package blockstore

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// helloHash is SHA-256("hello").
const helloHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

func TestSumAndString(t *testing.T) {
	h := Sum([]byte("hello"))
	if h.String() != helloHash {
		t.Fatalf("Sum(hello) = %v, want %v", h, helloHash)
	}
	if h.IsZero() || !(Hash{}).IsZero() {
		t.Fatal("IsZero wrong")
	}
}

func TestParseHash(t *testing.T) {
	h, err := ParseHash(helloHash)
	if err != nil || h != Sum([]byte("hello")) {
		t.Fatalf("ParseHash(valid) = %v, %v", h, err)
	}
	bad := []string{
		"",
		helloHash[:63],
		helloHash + "0",
		strings.ToUpper(helloHash),
		"g" + helloHash[1:],
		" " + helloHash[1:],
		"../" + helloHash[3:],
		helloHash[:62] + "\x00a",
	}
	for _, s := range bad {
		if _, err := ParseHash(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHash(%q) err = %v, want ErrMalformed", s, err)
		}
	}
}

func TestParseLocator(t *testing.T) {
	good := []string{helloHash + "+5", helloHash + "+0", helloHash + "+67108864"}
	for _, s := range good {
		l, err := ParseLocator(s)
		if err != nil {
			t.Fatalf("ParseLocator(%q): %v", s, err)
		}
		if l.String() != s {
			t.Errorf("round trip %q -> %q", s, l.String())
		}
	}
	bad := []string{
		"",
		helloHash,
		helloHash + "+",
		helloHash + "+-5",
		helloHash + "++5",
		helloHash + "+ 5",
		helloHash + "+5 ",
		helloHash + "+05",
		helloHash + "+00",
		helloHash + "+67108865",
		helloHash + "+99999999999999999999999",
		helloHash + "+5+A123@456",
		helloHash + "+0x10",
		"+" + helloHash + "+5",
		strings.ToUpper(helloHash) + "+5",
	}
	for _, s := range bad {
		if l, err := ParseLocator(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseLocator(%q) = %v, %v; want ErrMalformed", s, l, err)
		}
	}
}

func TestLocatorOfAndJSON(t *testing.T) {
	l := LocatorOf([]byte("hello"))
	if l.String() != helloHash+"+5" {
		t.Fatalf("LocatorOf = %v", l)
	}
	type doc struct {
		L Locator `json:"l"`
		H Hash    `json:"h"`
	}
	b, err := json.Marshal(doc{l, l.Hash})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"l":"` + helloHash + `+5","h":"` + helloHash + `"}`
	if string(b) != want {
		t.Fatalf("json = %s, want %s", b, want)
	}
	var back doc
	if err := json.Unmarshal(b, &back); err != nil || back.L != l || back.H != l.Hash {
		t.Fatalf("unmarshal = %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"h":"nope"}`), &back); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unmarshal bad hash err = %v", err)
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add(helloHash)
	f.Add(strings.ToUpper(helloHash))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseHash(%q) error %v does not wrap ErrMalformed", s, err)
			}
			return
		}
		if h.String() != s {
			t.Fatalf("ParseHash(%q).String() = %q", s, h.String())
		}
	})
}

func FuzzParseLocator(f *testing.F) {
	f.Add(helloHash + "+5")
	f.Add(helloHash + "+05")
	f.Add(helloHash + "+-0")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLocator(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseLocator(%q) error %v does not wrap ErrMalformed", s, err)
			}
			return
		}
		if l.String() != s {
			t.Fatalf("ParseLocator(%q).String() = %q", s, l.String())
		}
		if l.Size < 0 || l.Size > MaxBlockSize {
			t.Fatalf("ParseLocator(%q) size %d out of range", s, l.Size)
		}
	})
}
