// Package httpstore is the `blockfs serve` protocol, both ends: a Handler
// that puts one shared blockstore.Pool in front of a real store (S3, a
// directory) for many compute nodes, and a Client that is itself a
// blockstore.Store and blockstore.RefStore, so that http://HOST:PORT (or
// https) is a store string like any other.
//
// Every block GET goes through the server's one Pool: overlapping GETs of a
// block share one store read, and consecutive GETs are served from memory
// while the block stays in the pool.
//
// # Protocol (v1)
//
//	GET    /v1/blocks/<64hex>+<size>  block bytes (pool; verified); Range: one range → 206/416
//	HEAD   /v1/blocks/<64hex>+<size>  the same headers, no body
//	HEAD   /v1/blocks/<64hex>         existence (store Has): 200 / 404
//	PUT    /v1/blocks/<64hex>         token; Content-Length; body must hash to the name: 201 new, 200 existed
//	DELETE /v1/blocks/<64hex>         token: 204 / 404
//	GET    /v1/blocks                 token: text, one locator per line (connection aborted on a store error mid-way)
//	GET    /v1/refs/<name>            value, ETag: "<version>"; 404 (ServerOptions.FixedRefs: answered by the server, ETag "fixed")
//	PUT    /v1/refs/<name>            token; If-None-Match: * (create) or If-Match: "<version>": 200 + ETag, 412 conflict, 428 neither
//	GET    /v1/stats                  JSON {"kind":"server","pool":{...},"http":{...},"uptime_ns":N,"healthy":B,"reason":S, ...Extra}
//	GET    /healthz                   "ok" (liveness: stays ok while the store is down, see Handler.Health)
//
// Authentication is "Authorization: Bearer <token>". Writes (PUT, DELETE)
// and the listing need the token; with no token configured they are
// refused (403). Reads (block and ref GETs and HEADs, stats, healthz) need
// it too unless the server is Public or has no token. A token that is
// presented and wrong is refused (401) everywhere, even on a public server,
// so a misconfigured client finds out on its first request.
//
// # Status codes
//
//	200 OK / 206 Partial Content / 201 Created / 204 No Content / 304 Not Modified (If-None-Match on a block)
//	400 malformed hash, locator, ref name or path; hash mismatch or truncated body on PUT; bad If-Match;
//	    a request body on a method that takes none (the connection is closed)
//	401 missing or wrong token (WWW-Authenticate: Bearer)
//	403 write to a server with no token configured
//	404 no such block / ref / route
//	405 method not allowed on the route (Allow says which are)
//	408 PUT body not received within BodyTimeout (the connection is closed)
//	411 PUT without Content-Length
//	412 ref changed (conditional PUT lost)
//	413 PUT body above MaxBlockSize (blocks) or MaxRefSize (refs); block above the pool's memory
//	416 unsatisfiable Range (Content-Range: bytes */size)
//	428 ref PUT without If-Match / If-None-Match
//	501 the store keeps no refs
//	502 the store failed, or gave bytes that failed verification
//	503 busy: MaxClients requests in service, pool ErrBusy, or PUT memory budget spent (Retry-After);
//	    a request counts against MaxClients only once it is complete (a PUT, once its body is in)
//	504 the store read timed out (pool FetchTimeout)
//
// The client retries network errors, 5xx, 429 and 408, with exponential
// backoff and full jitter, up to MaxAttempts; every other answer is final.
// 503 is retried (honouring Retry-After, capped at RetryMax) until the
// call's context ends, not MaxAttempts times: the server is alive and its
// queue drains.
package httpstore
