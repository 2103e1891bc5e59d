package volume

import (
	"context"
	"sort"
)

// OpenAt opens snapshot spec (a generation or a tag) of v's store as a
// volume of its own, pinned as Options.At pins one. It shares v's store
// (connections, cache, credentials) instead of opening it again, so a
// mount serving several versions asks one stack for blocks; the store
// stays v's to close: close the pinned volume first. It is lazy
// (Options.Lazy): a snapshot with parts is served from them.
func (v *Volume) OpenAt(ctx context.Context, spec string) (*Volume, error) {
	return openOn(ctx, v.Spec, v.store, true, Options{MetaDir: v.metaParent, At: spec, Logger: v.logger, CompactAbove: -1, Lazy: true})
}

// Tags lists the store's tags by name, read from the store now (a mount
// lists them under /.blockfs/snapshots).
func (v *Volume) Tags(ctx context.Context) ([]Tag, error) {
	tags, _, err := v.cat.loadTags(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Tag, 0, len(tags))
	for _, t := range tags {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
