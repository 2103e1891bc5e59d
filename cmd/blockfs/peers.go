package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storeurl"
	"blockfs/blockstore/tier"
	"blockfs/fs/mount"

	"github.com/spf13/pflag"
)

// peerFlags make a mount a member of a tier of mounts (peers serving
// peers): it serves its pool and disk cache to the other mounts of its
// rack, and gets a block it does not own from its owner among them, so the
// store behind (a rack serve) sends each block to the rack once.
type peerFlags struct {
	serve, peers, name *string
}

func addPeerFlags(fl *pflag.FlagSet) *peerFlags {
	return &peerFlags{
		serve: fl.String("serve", "", "serve this mount's blocks to its --peers at ADDR (host:port, as they name it)"),
		peers: fl.String("peers", "", "with --serve: the mounts of this tier, this one too (http://n1:8421#n1,http://n2:8421#n2): a block this mount does not own is read from its owner"),
		name:  fl.String("peer-name", "", "this mount's name in --peers (the member's #fragment, else its URL)"),
	}
}

func (p *peerFlags) check() error {
	if (*p.serve == "") != (*p.peers == "") || (*p.peers == "") != (*p.name == "") {
		return usagef("--serve, --peers and --peer-name go together")
	}
	if *p.peers != "" && !tier.IsTier(*p.peers) {
		return usagef("--peers %s: name every member of the tier, this one too", *p.peers)
	}
	return nil
}

// openPeerTier opens the tier of --peers (members start down until probed
// up, every 250 ms: they start at about the same time) and checks that
// name is one of them. nil without --peers.
func openPeerTier(ctx context.Context, peersSpec, name string, openOpts storeurl.Options, token string) (*tier.Store, error) {
	if peersSpec == "" {
		return nil, nil
	}
	tc, err := storeurl.ClientTLS(openOpts.CAFile)
	if err != nil {
		return nil, err
	}
	peers, err := tier.Open(ctx, peersSpec, tier.Options{Client: httpstore.ClientOptions{Token: token, TLS: tc}, StartDown: true, ProbeInterval: 250 * time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("--peers: %w", err)
	}
	if _, err := tier.NewRouter(nil, peers, name); err != nil {
		peers.Close()
		return nil, usagef("--peer-name %s: %v", name, err)
	}
	return peers, nil
}

// routeThrough wraps what wrap (maybe nil) does to a backend with a Router
// over peers, if any: under the disk cache, so a block held here is served
// from here.
func routeThrough(wrap func(blockstore.Store) blockstore.Store, peers *tier.Store, name string) func(blockstore.Store) blockstore.Store {
	if peers == nil {
		return wrap
	}
	return func(s blockstore.Store) blockstore.Store {
		if wrap != nil {
			s = wrap(s)
		}
		r, _ := tier.NewRouter(s, peers, name) // checked by openPeerTier
		return r
	}
}

// servePeers serves the mount's pool to its peers at addr until ctx ends
// or stop is called: reads only unless the token is given, which writes
// need as at a serve.
func servePeers(ctx context.Context, addr string, m *mount.Mount, store blockstore.Store, peers *tier.Store, token string, logger *slog.Logger) (stop func(), err error) {
	loopback, err := isLoopback(addr)
	if err != nil {
		return nil, usagef("--serve %s: %v", addr, err)
	}
	if !loopback && token == "" {
		return nil, usagef("--serve %s (not loopback) needs BLOCKFS_TOKEN or --store-token-file: the peers' token", addr)
	}
	h := httpstore.NewHandler(store, m.Pool(), httpstore.ServerOptions{
		Token: token, Public: loopback,
		Extra: func() map[string]any { return map[string]any{"peers": peers.Stats()} },
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--serve: %w", err)
	}
	srv := httpstore.NewServer(h)
	srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serveUntil(sctx, srv, ln, 5*time.Second) }()
	logger.Info("serving peers", "url", "http://"+ln.Addr().String())
	return func() {
		cancel()
		if err := <-done; err != nil {
			logger.Warn("serving peers", "err", err)
		}
	}, nil
}
