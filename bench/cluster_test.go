package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"blockfs/blockstore"
	"blockfs/blockstore/httpstore"
	"blockfs/blockstore/storeurl"
	"blockfs/fs/mount"
	"blockfs/internal/testsvc"

	"context"
	"net"
	"net/http"
)

// BenchmarkCluster: 8 nodes (8 mounts, each with its own pool and
// metadata), 4 readers each of one cold file, over MinIO with 20 ms
// latency: once through one blockfs serve, once with every node straight
// on MinIO. Reports MinIO GETs and wall time side by side.
func BenchmarkCluster(b *testing.B) {
	m := testsvc.SharedMinIO(b)
	size := min(benchMiB(), 64) << 20
	spec, _, data := setupS3(b, m, size)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	proxy := testsvc.StartProxy(b, m.Host())
	proxy.Latency(20 * time.Millisecond)
	cfg := s3Config(m, proxy.Endpoint())

	type result struct {
		gets int64
		wall time.Duration
	}
	run := func(nodeSpec string, oo storeurl.Options) result {
		before := m.Requests(b, "getobject")
		var mnts []string
		var unmounts []func()
		for range 8 {
			dir, unmount := mountBlockfs(b, nodeSpec, oo.S3, mount.Options{Refresh: -1})
			mnts = append(mnts, dir)
			unmounts = append(unmounts, unmount)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for _, mnt := range mnts {
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out, err := exec.Command("sha256sum", filepath.Join(mnt, "data.bin")).Output()
					if err != nil || strings.Fields(string(out))[0] != want {
						b.Errorf("%s: %v", mnt, err)
					}
				}()
			}
		}
		wg.Wait()
		wall := time.Since(start)
		for _, u := range unmounts {
			u()
		}
		return result{gets: m.Requests(b, "getobject") - before, wall: wall}
	}

	var direct, served result
	for b.Loop() {
		direct = run(spec, storeurl.Options{S3: cfg})
		// One server on MinIO; the nodes mount the server.
		store, err := storeurl.Open(context.Background(), spec, storeurl.Options{S3: cfg})
		if err != nil {
			b.Fatal(err)
		}
		pool := blockstore.NewPool(store.Blocks, blockstore.PoolConfig{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: httpstore.NewHandler(store.Blocks, pool, httpstore.ServerOptions{})}
		go srv.Serve(ln)
		served = run("http://"+ln.Addr().String(), storeurl.Options{})
		srv.Close()
		pool.Close()
	}
	b.ReportMetric(float64(direct.gets), "direct-GETs")
	b.ReportMetric(float64(served.gets), "serve-GETs")
	b.ReportMetric(direct.wall.Seconds(), "direct-s")
	b.ReportMetric(served.wall.Seconds(), "serve-s")
	fmt.Printf("8 nodes x 4 readers of a cold %d MiB file, MinIO + 20 ms latency:\n", size>>20)
	fmt.Printf("  %-28s %6s %10s\n", "", "GETs", "wall")
	fmt.Printf("  %-28s %6d %10s\n", "nodes straight on MinIO", direct.gets, direct.wall.Round(time.Millisecond))
	fmt.Printf("  %-28s %6d %10s   (%.1fx fewer GETs, %.2fx the time)\n", "nodes via one blockfs serve", served.gets, served.wall.Round(time.Millisecond),
		float64(direct.gets)/float64(max(served.gets, 1)), served.wall.Seconds()/direct.wall.Seconds())
}
