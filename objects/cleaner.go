package objects

import "context"

type CleanOptions struct{}
type CleanStats struct{}

func (l *Log) Clean(ctx context.Context, opts CleanOptions) (CleanStats, error) {
	if l.opts.ReadOnly {
		return CleanStats{}, ErrReadOnly
	}
	return CleanStats{}, nil
}
