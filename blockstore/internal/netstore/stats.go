package netstore

import "sync/atomic"

// Counters are the request counters every network store keeps (each store
// exports them in its own Stats type, under the names its users know).
// Requests count HTTP attempts: a retried call counts each attempt.
type Counters struct {
	Gets, Puts, Heads, Lists, Deletes, Other atomic.Int64 // attempts by kind
	Retries                                  atomic.Int64 // attempts after a transient failure
	Busy                                     atomic.Int64 // overload answers received
	Errors                                   atomic.Int64 // failed calls
	BytesIn, BytesOut                        atomic.Int64 // body bytes read; sent with successful PUTs
}
