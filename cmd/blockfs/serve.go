package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/limit"
	"blockfs/blockstore/storeurl"
	"blockfs/blockstore/tier"
	"blockfs/internal/metrics"
	"blockfs/internal/procs"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

func init() {
	register(&command{
		name:    "serve",
		args:    "",
		summary: "serve a store's blocks and metadata to many mounts over HTTP",
		help: `One shared read tier between compute nodes and the store: every block GET
goes through one buffer pool, so however many nodes ask for a block at once,
the store is read once. http://HOST:PORT (or https://) is then a store for
mount, import and stats. Writes need the bearer token (--token-file); reads
need it too on a non-loopback address unless --public. SIGINT/SIGTERM stop
accepting and let requests in flight finish within --shutdown-timeout.`,
		setup: setupServe,
	})
}

// serveFlags are serve's flags.
type serveFlags struct {
	sf              *storeFlags
	cf              *cacheFlags
	lf              *logFlags
	listen          *string
	poolSize        *int64
	maxClients      *int
	storeConc       *int
	tokenFile       *string
	public          *bool
	tlsCert, tlsKey *string
	metricsAddr     *string
	shutdown        *time.Duration
	cpuprofile      *string
	peers, peerName *string
}

func addServeFlags(fl *pflag.FlagSet) *serveFlags {
	return &serveFlags{
		sf:          addStoreFlags(fl),
		cf:          addCacheFlags(fl),
		lf:          addLogFlags(fl),
		listen:      fl.String("listen", "127.0.0.1:8420", "address to listen on"),
		poolSize:    sizeFlag(fl, "pool-size", blockstore.DefaultMaxBytes, "memory for shared block buffers"),
		maxClients:  fl.Int("max-clients", 256, "requests served at once; beyond that, 503 with Retry-After"),
		storeConc:   fl.Int("store-concurrency", limit.DefaultMaxConcurrent, "requests to the store at once; more queue (16 per slot), then 503"),
		tokenFile:   fl.String("token-file", "", "file holding the bearer token that writes (and non-public reads) need"),
		public:      fl.Bool("public", false, "allow reads without the token on a non-loopback address"),
		tlsCert:     fl.String("tls-cert", "", "TLS certificate (PEM); with --tls-key, serve https"),
		tlsKey:      fl.String("tls-key", "", "TLS private key (PEM)"),
		metricsAddr: fl.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics (\":PORT\" listens on loopback; say 0.0.0.0:PORT for every interface)"),
		shutdown:    fl.Duration("shutdown-timeout", 30*time.Second, "how long requests in flight may finish after SIGTERM"),
		cpuprofile:  hiddenString(fl, "cpuprofile", "write a CPU profile of the serve's life to this file"),
		peers:       fl.String("peers", "", "the read tier this serve is a member of, as its clients name it (http://a:8420#a,http://b:8420#b): a block this serve does not own is fetched from its owner, not the store (for mounts with --balance)"),
		peerName:    fl.String("peer-name", "", "this serve's name in --peers (the member's #fragment, else its URL)"),
	}
}

// hiddenString is a string flag left out of --help (a tool for
// benchmarks, not for operators).
func hiddenString(fl *pflag.FlagSet, name, usage string) *string {
	p := fl.String(name, "", usage)
	_ = fl.MarkHidden(name)
	return p
}

// check validates the flags that need nothing opened; it returns whether
// the listen address is loopback.
func (f *serveFlags) check(args []string) (loopback bool, err error) {
	if len(args) != 0 {
		return false, usagef("serve takes no arguments, got %d", len(args))
	}
	if *f.maxClients < 1 {
		return false, usagef("--max-clients must be at least 1")
	}
	if *f.storeConc < 1 {
		return false, usagef("--store-concurrency must be at least 1")
	}
	if *f.poolSize < 4<<20 {
		return false, usagef("--pool-size %s is too small (at least 4MiB)", humanize.IBytes(uint64(*f.poolSize)))
	}
	if (*f.tlsCert == "") != (*f.tlsKey == "") {
		return false, usagef("--tls-cert and --tls-key go together")
	}
	if (*f.peers == "") != (*f.peerName == "") {
		return false, usagef("--peers and --peer-name go together")
	}
	loopback, err = isLoopback(*f.listen)
	if err != nil {
		return false, usagef("--listen %s: %v", *f.listen, err)
	}
	return loopback, f.lf.check()
}

func setupServe(fl *pflag.FlagSet) runFunc {
	f := addServeFlags(fl)
	return func(ctx context.Context, e env, args []string) error {
		loopback, err := f.check(args)
		if err != nil {
			return err
		}
		spec, openOpts, err := openOptions(f.sf, f.cf)
		if err != nil {
			return err
		}
		token, err := readToken(*f.tokenFile, "")
		if err != nil {
			return err
		}
		if !loopback && token == "" && !*f.public {
			return usagef("listening on %s (not loopback) needs --token-file, or --public to serve reads to anyone", *f.listen)
		}
		logger, closeLog, err := f.lf.open(e.stderr, false)
		if err != nil {
			return err
		}
		defer closeLog()
		// A serve runs for months under a service manager: what ends it
		// must reach the configured log, not only the terminal.
		if err := runServe(ctx, e, f, spec, openOpts, token, loopback, logger); err != nil {
			logger.Error("serve stopped", "err", err)
			return err
		}
		return nil
	}
}

// runServe opens the store and serves it until ctx ends.
func runServe(ctx context.Context, e env, f *serveFlags, spec string, openOpts storeurl.Options, token string, loopback bool, logger *slog.Logger) error {
	// No procs.More here, unlike mount and import: its gain was
	// measured for those two (docs/performance.md). A serve's pool
	// verifies hashes beside its request handlers too, so it may help
	// here as well, but that is for bench/cluster_test.go to show first.
	if *f.cpuprofile != "" {
		stop, err := startCPUProfile(*f.cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	reg := metrics.New()
	// The bound sits under the disk cache: it counts what reaches the
	// store, not cache hits.
	if *f.peers != "" && !tier.IsTier(*f.peers) {
		return usagef("--peers %s: name every member of the tier, this one too", *f.peers)
	}
	peers, err := openPeerTier(ctx, *f.peers, *f.peerName, openOpts, token)
	if err != nil {
		return err
	}
	if peers != nil {
		defer peers.Close()
	}
	// The router sits over the bound, which counts the store's requests,
	// not the peers'.
	openOpts.WrapBackend = routeThrough(func(s blockstore.Store) blockstore.Store {
		s = limit.New(s, limit.Options{MaxConcurrent: *f.storeConc})
		if *f.metricsAddr != "" {
			s = reg.WrapStore(s)
		}
		return s
	}, peers, *f.peerName)
	store, err := storeurl.Open(ctx, spec, openOpts)
	if err != nil {
		return err
	}
	defer store.Close()
	pool := blockstore.NewPool(store.Blocks, blockstore.PoolConfig{MaxBytes: *f.poolSize, MaxWaiters: *f.maxClients})
	defer pool.Close()
	var fixed map[string][]byte
	if name, value, ok := store.MarkerRef(); ok {
		// Clients check the format marker of the store behind the serve.
		fixed = map[string][]byte{name: value}
	}
	handler := httpstore.NewHandler(store.Blocks, pool, httpstore.ServerOptions{
		Token:      token,
		Public:     *f.public || loopback,
		MaxClients: *f.maxClients,
		Extra:      storeStats(spec, store, peers),
		FixedRefs:  fixed,
	})
	if *f.metricsAddr != "" {
		exportServe(reg, pool, handler, store)
		addr, err := reg.Serve(ctx, *f.metricsAddr)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "blockfs serve: metrics at http://%s/metrics\n", addr)
		logger.Info("metrics", "url", "http://"+addr.String()+"/metrics")
	}

	srv := httpstore.NewServer(handler) // every phase of a request bounded
	// net/http's own complaints (TLS handshakes, accept errors) go to the
	// same log as ours.
	srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	ln, scheme, err := listenFor(srv, *f.listen, *f.tlsCert, *f.tlsKey)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "blockfs serve: serving %s at %s://%s (pool %s, max %d clients)\n",
		spec, scheme, ln.Addr(), humanize.IBytes(uint64(*f.poolSize)), *f.maxClients)
	logger.Info("serving", "store", spec, "url", scheme+"://"+ln.Addr().String(),
		"pool_bytes", *f.poolSize, "max_clients", *f.maxClients)
	if err := serveUntil(ctx, srv, ln, *f.shutdown); err != nil {
		return err
	}
	logger.Info("stopped", "url", scheme+"://"+ln.Addr().String())
	return nil
}

// storeStats is what /v1/stats adds about the store behind the pool.
func storeStats(spec string, store *storeurl.Stack, peers *tier.Store) func() map[string]any {
	return func() map[string]any {
		// What it costs the machine is its process's usage. Its health
		// is the Handler's own (healthy, reason): whether its store
		// answers.
		usage, _ := procs.Self()
		extra := map[string]any{"store": spec, "backend": store.BackendStats(), "process": usage}
		if ls, ok := store.LimitStats(); ok {
			extra["store_limit"] = ls
		}
		if store.Cache != nil {
			extra["cache"] = store.Cache.Stats()
		}
		if peers != nil {
			extra["peers"] = peers.Stats()
		}
		return extra
	}
}

// serveUntil serves on ln until ctx ends (a signal), then lets requests
// in flight finish within shutdown.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, shutdown time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		srv.Close()
		return fmt.Errorf("shutdown: requests still running after %s: %w", shutdown, err)
	}
	return nil
}

// listenFor listens on addr for srv, with TLS if cert is set (srv gets
// the TLS configuration), and says which scheme clients use.
func listenFor(srv *http.Server, addr, cert, key string) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen %s: %w", addr, err)
	}
	if cert == "" {
		return ln, "http", nil
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("tls: %w", err)
	}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return tls.NewListener(ln, srv.TLSConfig), "https", nil
}

// isLoopback reports whether a listen address binds only loopback.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// startCPUProfile profiles the process into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	pf, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(pf); err != nil {
		pf.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); pf.Close() }, nil
}
