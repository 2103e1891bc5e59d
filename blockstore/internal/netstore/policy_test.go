package netstore

import "testing"

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		raw      string
		withPath bool
		ok       bool
	}{
		{"http://h:1", false, true},
		{"https://h/", false, true},
		{"https://h/prefix", false, false},
		{"https://h/prefix", true, true},
		{"ftp://h", true, false},
		{"http://", true, false},
		{"http://u:p@h", true, false},
		{"http://h?x=1", true, false},
		{"http://h#f", true, false},
	} {
		if _, err := ParseURL(tc.raw, tc.withPath); (err == nil) != tc.ok {
			t.Errorf("ParseURL(%q, %v): %v, want ok %v", tc.raw, tc.withPath, err, tc.ok)
		}
	}
}
