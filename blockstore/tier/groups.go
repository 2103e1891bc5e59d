package tier

import (
	"fmt"
	"strings"
)

// parseGroups splits a tier's store string into groups of members, the
// way CVMFS names its proxies: ";" separates groups, tried in order, and
// "|" (or ",", as a plain list of members always was) separates the
// members of one group, which share its blocks by rendezvous hashing.
// "http://a|http://b;http://c" is a group of a and b, and c, asked only
// when every member of that group is down. An empty group or member, or a
// member named twice (by URL or by name), is an error: a stray separator
// would otherwise change which member owns which block without a word.
func parseGroups(spec string) ([][]string, error) {
	var groups [][]string
	seen := map[string]bool{}
	for g, group := range strings.Split(spec, ";") {
		if strings.TrimSpace(group) == "" {
			return nil, fmt.Errorf("tier %s: group %d is empty (groups are separated by ';')", spec, g+1)
		}
		var members []string
		for i, raw := range strings.Split(strings.ReplaceAll(group, "|", ","), ",") {
			u, name := memberName(raw)
			if u == "" {
				return nil, fmt.Errorf("tier %s: group %d: member %d is empty (members are separated by '|' or ',')", spec, g+1, i+1)
			}
			if seen[u] || seen["#"+name] {
				return nil, fmt.Errorf("tier %s: member %s named twice", spec, strings.TrimSpace(raw))
			}
			seen[u], seen["#"+name] = true, true
			members = append(members, raw)
		}
		groups = append(groups, members)
	}
	return groups, nil
}
