package s3

// Stats is a snapshot of a Store's counters, all monotonic totals since
// Open. Requests count HTTP attempts (a retried request counts each
// attempt); Retries counts the attempts after a first; Errors counts calls
// that failed for another reason than a definite answer (a missing block or
// ref, or a ref conflict, is an answer, not an error); a wrong-sized block
// is an error.
type Stats struct {
	GetRequests    int64 `json:"get_requests"`    // GETs of blocks and refs
	PutRequests    int64 `json:"put_requests"`    // PUTs of blocks and refs
	HeadRequests   int64 `json:"head_requests"`   // HEADs (Has, Put and Delete checks, ref checks)
	ListRequests   int64 `json:"list_requests"`   // ListObjectsV2 pages (Open's check included)
	DeleteRequests int64 `json:"delete_requests"` // DELETEs
	Retries        int64 `json:"retries"`         // attempts after a transient failure
	Errors         int64 `json:"errors"`          // failed calls
	BytesIn        int64 `json:"bytes_in"`        // body bytes read (blocks and refs)
	BytesOut       int64 `json:"bytes_out"`       // body bytes uploaded successfully
}

// Stats returns the store's counters; each is read atomically.
func (s *Store) Stats() Stats {
	c := &s.c
	return Stats{
		GetRequests:    c.Gets.Load(),
		PutRequests:    c.Puts.Load(),
		HeadRequests:   c.Heads.Load(),
		ListRequests:   c.Lists.Load(),
		DeleteRequests: c.Deletes.Load(),
		Retries:        c.Retries.Load(),
		Errors:         c.Errors.Load(),
		BytesIn:        c.BytesIn.Load(),
		BytesOut:       c.BytesOut.Load(),
	}
}
