package volume

import (
	"context"
	"encoding/json"

	"blockfs/blockstore"
)

// Test hooks: crafted catalogs are written through the store's own API, as
// an attacker with write access to the store would.

// HeadForTest returns the current manifest, its blocks and the ref version.
func HeadForTest(ctx context.Context, c *Catalog) (Manifest, []blockstore.Locator, string, error) {
	h, err := c.cat.load(ctx)
	return h.m, h.locs, h.version, err
}

// PutBlobForTest stores data as metadata blocks.
func PutBlobForTest(ctx context.Context, c *Catalog, data []byte) ([]blockstore.Locator, error) {
	return c.cat.putBlob(ctx, data)
}

// PublishRawForTest makes m the head manifest, unchecked, if the ref is
// still at ifVersion.
func PublishRawForTest(ctx context.Context, c *Catalog, m Manifest, ifVersion string) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	locs, err := c.cat.putBlob(ctx, data)
	if err != nil {
		return err
	}
	_, err = c.cat.refs.PutRef(ctx, headRef, formatRef(locs), ifVersion)
	return err
}

// MetaDirForTest is the volume's private log directory.
func MetaDirForTest(v *Volume) string { return v.metaDir }
