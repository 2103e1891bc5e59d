package netstore

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// HTTPTransport is the transport of the network stores (S3, blockfs
// serve): timeouts on every phase, since a pool fetch must not hang, and
// enough idle connections per host for the many blocks a pool fetches at
// once. tc may be nil.
func HTTPTransport(timeout time.Duration, tc *tls.Config) *http.Transport {
	dial := min(timeout, 10*time.Second)
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   dial,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // blocks are fetched byte-exact
	}
}
