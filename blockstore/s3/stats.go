package s3

import "blockfs/blockstore/internal/netstore"

// Stats is a snapshot of a Store's counters, the same as every network
// store's (OtherRequests and Busy stay 0 on S3).
type Stats = netstore.Stats

// Stats returns the store's counters; each is read atomically.
func (s *Store) Stats() Stats { return s.c.Stats() }
