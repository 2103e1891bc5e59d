package main

import (
	"fmt"
	"sort"
	"strings"
)

// suggest is ", did you mean "X"?" for the nearest command names to a
// mistyped one, or "": the commands it is a prefix of, else those fewest
// edits away (at most two), so that "stat" suggests stats, not also tag.
func suggest(name string) string {
	var near []string
	best := 3
	for c := range commands {
		d := editDistance(name, c)
		if len(name) >= 2 && strings.HasPrefix(c, name) {
			d = 0
		}
		switch {
		case d < best:
			best, near = d, []string{c}
		case d == best:
			near = append(near, c)
		}
	}
	if len(near) == 0 {
		return ""
	}
	sort.Strings(near)
	return fmt.Sprintf(", did you mean \"%s\"?", strings.Join(near, `" or "`))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
