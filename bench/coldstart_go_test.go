package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockfs/fs/importer"
	"blockfs/fs/mount"
)

// coldStartHello is the program the Go cold start builds: it imports
// net/http, so that a build reads the sources of a good part of std.
const coldStartHello = `package main

import (
	"fmt"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	fmt.Println(http.ListenAndServe("127.0.0.1:0", nil))
}
`

// goBuild is a build of the hello program with the GOROOT under home
// (home/go) and its own go command, in a clean environment.
type goBuild struct {
	hello string // the program's file
	cache string // GOCACHE
	fresh bool   // a new GOCACHE for every build
}

// run times one build. With a shared cache, every package is a cache hit,
// yet the go command still reads every source file of every package the
// program needs, to hash them into the action IDs (strace: 1088 files
// under GOROOT/src for this program): that is the cold start timed, not
// the compiler's CPU. -trimpath keeps the GOROOT's path out of those IDs,
// so one cache serves the local copy and every mount.
func (g *goBuild) run(b *testing.B, home string) time.Duration {
	b.Helper()
	cache := g.cache
	if g.fresh {
		cache = b.TempDir()
	}
	goroot := filepath.Join(home, "go")
	// Through a shell, so that the execve of the go binary, which reads it
	// from the mount, is not this process's: exec'd straight from here it
	// hung every time, the child in execve and this process's in-process
	// proxy answering nothing (our reading: Go's vfork keeps the forking
	// thread, and with it a stop-the-world, waiting for that execve, which
	// waits for the proxy).
	cmd := exec.Command("/bin/sh", "-c", `exec "$0" "$@"`, filepath.Join(goroot, "bin", "go"), "build", "-o", os.DevNull, g.hello)
	cmd.Dir = filepath.Dir(g.hello)
	cmd.Env = append(cleanGoEnv(os.Environ()), "GOROOT="+goroot, "GOCACHE="+cache, "GOTOOLCHAIN=local",
		"GOFLAGS=-mod=mod -trimpath", "CGO_ENABLED=0", "GOPATH="+filepath.Join(filepath.Dir(g.hello), "gopath"), "GOENV=off")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build with GOROOT=%s: %v\n%s", goroot, err, out)
	}
	return time.Since(start)
}

// cleanGoEnv drops the go command's settings from an environment (the
// test binary runs under go test, which sets some).
func cleanGoEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GO") && !strings.HasPrefix(kv, "CGO_") {
			out = append(out, kv)
		}
	}
	return out
}

// BenchmarkColdStartGo: `go build` of a small program importing net/http
// with this machine's GOROOT on a blockfs mount over MinIO + 20 ms, side
// by side with the GOROOT copied to local disk (cold: evicted with
// fadvise) and warm. The build cache is primed once (kept in the user's
// cache directory for the next run) and shared (see
// goBuild.run; BLOCKFS_COLDSTART_GO_FRESHCACHE=1 gives every build a new
// one, and then the compiler's CPU dominates). Run it with
// bench/coldstart.sh.
func BenchmarkColdStartGo(b *testing.B) {
	goroot := os.Getenv("BLOCKFS_COLDSTART_GOROOT")
	if goroot == "" {
		out, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			b.Fatalf("go env GOROOT: %v", err)
		}
		goroot = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(goroot, "bin", "go")); err != nil {
		b.Skipf("no go command in GOROOT %s: %v", goroot, err)
	}
	dir := b.TempDir()
	// The primed cache outlives the run (a cache is keyed by content, so
	// reuse is safe): priming compiles std, a minute or more of CPU here.
	userCache, err := os.UserCacheDir()
	if err != nil {
		b.Fatal(err)
	}
	g := &goBuild{hello: filepath.Join(dir, "hello.go"), cache: filepath.Join(userCache, "blockfs", "coldstart-gocache"),
		fresh: os.Getenv("BLOCKFS_COLDSTART_GO_FRESHCACHE") == "1"}
	if err := os.WriteFile(g.hello, []byte(coldStartHello), 0o644); err != nil {
		b.Fatal(err)
	}
	rounds := 2
	if g.fresh {
		rounds = 1
	}
	runColdJob(b, &coldJob{
		what: "go build of hello (net/http)", src: goroot, dest: "/go", rounds: rounds, run: g.run, mountBin: buildBlockfs(b),
		variants: []*coldVariant{
			{name: "mount cold, no packs", pack: importer.Options{PackBelow: 0}},
			{name: "mount cold, packs < 64 KiB (default)", pack: importer.Options{PackBelow: importer.DefaultPackBelow}},
			{name: "mount cold, packs < 64 KiB + replayed trace", usesSpecs: "mount cold, packs < 64 KiB (default)", record: true,
				mount: mount.Options{TraceTrigger: "/go/bin/go"}},
			{name: "mount cold, packs < 1 MiB", pack: importer.Options{PackBelow: importer.MaxPackBelow}},
			{name: "mount cold, packs < 1 MiB + replayed trace", usesSpecs: "mount cold, packs < 1 MiB", record: true,
				mount: mount.Options{TraceTrigger: "/go/bin/go"}},
		},
	})
}
