package blockstore

import (
	"context"
	"fmt"
)

var _ Mapper = (*DirStore)(nil)

// Map implements Mapper: the block file is mapped shared and read-only,
// and locked in memory.
func (d *DirStore) Map(ctx context.Context, loc Locator) (*Mapping, error) {
	if d.noMap.Load() {
		return nil, fmt.Errorf("blockstore: map %v: %w (mlock failed earlier)", loc, errNoMap)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := loc.validate(); err != nil {
		return nil, err
	}
	f, err := d.openBlock("map", loc)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := MapFile(f, loc.Size, &d.noMap)
	if err != nil {
		return nil, fmt.Errorf("blockstore: map %v: %w", loc, err)
	}
	return m, nil
}
