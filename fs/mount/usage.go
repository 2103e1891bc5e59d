package mount

import (
	"path"

	"blockfs/fs/tree"
)

// usage is what statfs reports: the bytes and nodes of the tree.
type usage struct {
	bytes, nodes int64
}

// usage is the served parts' totals when the volume has them (a walk would
// fetch every part of a lazily loaded tree), else the tree summed once per
// metadata generation: df and monitoring ask often, and the tree changes
// only when a refresh ingests something. The walk skips what cannot be
// decoded, as listings do.
func (m *Mount) usage() usage {
	if t, ok := m.vol.Totals(); ok {
		return usage{bytes: t.Bytes, nodes: 1 + t.Files + t.Dirs + t.Symlinks}
	}
	gen := m.vol.MetaStats().Generation
	m.usageMu.Lock()
	defer m.usageMu.Unlock()
	if m.usageOK && m.usageGen == gen {
		return m.usageVal
	}
	u := usage{nodes: 1} // the root
	var walk func(dir string)
	walk = func(dir string) {
		_ = m.vol.Tree.ListEach(dir, func(name string, n *tree.Node, err error) bool {
			if err != nil || badName(name) != "" || dir == "/" && name == StatsFileName {
				return true
			}
			u.nodes++
			switch n.Kind {
			case tree.KindDir:
				walk(path.Join(dir, name))
			case tree.KindFile:
				u.bytes += n.Size
			}
			return true
		})
	}
	walk("/")
	m.usageVal, m.usageGen, m.usageOK = u, gen, true
	return u
}
