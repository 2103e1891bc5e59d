package netstore

import "sync/atomic"

// Counters are the request counters every network store keeps.
type Counters struct {
	Gets, Puts, Heads, Lists, Deletes, Other atomic.Int64 // attempts by kind
	Retries                                  atomic.Int64 // attempts after a transient failure
	Busy                                     atomic.Int64 // overload answers received
	Errors                                   atomic.Int64 // failed calls
	BytesIn, BytesOut                        atomic.Int64 // body bytes read; sent with successful PUTs
}

// Stats is a snapshot of a network store's counters (s3.Stats and
// httpstore.ClientStats), all monotonic totals since the store was opened.
// Requests count HTTP attempts: a retried call counts each. Errors counts
// calls that failed for another reason than a definite answer (a missing
// block or ref, or a ref conflict, is an answer, not an error); a
// wrong-sized block is an error.
type Stats struct {
	GetRequests    int64 `json:"get_requests"`    // GETs of blocks and refs
	PutRequests    int64 `json:"put_requests"`    // PUTs of blocks and refs
	HeadRequests   int64 `json:"head_requests"`   // HEADs (Has; on S3 also Put, Delete and ref checks)
	ListRequests   int64 `json:"list_requests"`   // listings (on S3, ListObjectsV2 pages, Open's check included)
	DeleteRequests int64 `json:"delete_requests"` // DELETEs
	OtherRequests  int64 `json:"other_requests"`  // blockfs serve's /healthz and /v1/stats
	Retries        int64 `json:"retries"`         // attempts after a transient failure
	Busy           int64 `json:"busy"`            // blockfs serve's 503 answers received
	Errors         int64 `json:"errors"`          // failed calls
	BytesIn        int64 `json:"bytes_in"`        // body bytes read (blocks and refs)
	BytesOut       int64 `json:"bytes_out"`       // body bytes sent with successful PUTs
}

// Stats returns the counters; each is read atomically.
func (c *Counters) Stats() Stats {
	return Stats{
		GetRequests:    c.Gets.Load(),
		PutRequests:    c.Puts.Load(),
		HeadRequests:   c.Heads.Load(),
		ListRequests:   c.Lists.Load(),
		DeleteRequests: c.Deletes.Load(),
		OtherRequests:  c.Other.Load(),
		Retries:        c.Retries.Load(),
		Busy:           c.Busy.Load(),
		Errors:         c.Errors.Load(),
		BytesIn:        c.BytesIn.Load(),
		BytesOut:       c.BytesOut.Load(),
	}
}
