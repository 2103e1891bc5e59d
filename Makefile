# blockfs: the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
BIN     := $(CURDIR)/bin

# What `blockfs version` names, from git itself: the go command's own VCS
# stamping sees no repository in a linked worktree (golang/go#58218).
GIT_COMMIT  := $(shell git rev-parse HEAD 2>/dev/null)
GIT_TIME    := $(shell git log -1 --format=%cI 2>/dev/null)
GIT_DIRTY   := $(shell test -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" && echo true)
BUILD_DATE  := $(shell date -u -d "@$${SOURCE_DATE_EPOCH:-$$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS     := -X main.buildDate=$(BUILD_DATE) -X main.commit=$(GIT_COMMIT) -X main.commitTime=$(GIT_TIME) -X main.modified=$(GIT_DIRTY)

.PHONY: all build demo test check vet fmt-check staticcheck unit bench fuzz clean minio deps package promtool

# The pinned MinIO server the S3 tests run against (internal/testsvc finds
# it here, or wherever BLOCKFS_MINIO_BIN points). Built once from source by
# the Go toolchain; later runs only check that it is there.
MINIO_VERSION   := v0.0.0-20260212201848-7aac2a2c5b7c
BLOCKFS_MINIO_BIN ?= $(HOME)/.cache/blockfs/bin/minio-$(MINIO_VERSION)
export BLOCKFS_MINIO_BIN

# Prometheus' own promtool, at a pinned version, for `promtool check
# metrics` on real scrapes (cmd/blockfs TestMetricsLint, TestMetricsEndpoints).
PROMTOOL_VERSION := v0.316.0
BLOCKFS_PROMTOOL ?= $(HOME)/.cache/blockfs/bin/promtool-$(PROMTOOL_VERSION)
export BLOCKFS_PROMTOOL

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/blockfs ./cmd/blockfs

# The main job: import testdata/ into a local store, mount it, read, show stats.
demo: deps build
	./scripts/demo.sh

# The whole test suite: static checks, then every test with the race detector.
test: deps check minio promtool unit

# System tools the mounts and their tests need: fuse3 gives mount.fuse3
# (mount -t fuse.blockfs runs it) and fusermount3 (mounts without root).
# Installed with apt-get when missing and we are root; under CI=true a tool
# still missing afterwards fails the build instead of skipping tests.
DEPS_TOOLS := mount.fuse3 fusermount3
deps:
	@missing=""; for t in $(DEPS_TOOLS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing fuse3 (for$$missing)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y fuse3 >/dev/null || \
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y fuse3 >/dev/null; }; \
	fi; \
	missing=""; for t in $(DEPS_TOOLS); do PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing (install the fuse3 package)"; \
		if [ "$$CI" = true ]; then exit 1; fi; \
	fi

check: vet fmt-check staticcheck

# staticcheck at a pinned version, fetched and built by the go command.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
staticcheck:
	$(GO) run $(STATICCHECK) ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

minio:
	@if [ ! -x "$(BLOCKFS_MINIO_BIN)" ]; then \
		set -e; echo "building MinIO $(MINIO_VERSION) into $(BLOCKFS_MINIO_BIN) (once, a few minutes)"; \
		tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
		GOBIN="$$tmp" GOFLAGS=-buildvcs=false $(GO) install github.com/minio/minio@$(MINIO_VERSION); \
		mkdir -p "$$(dirname "$(BLOCKFS_MINIO_BIN)")"; \
		mv "$$tmp/minio" "$(BLOCKFS_MINIO_BIN).tmp" && mv "$(BLOCKFS_MINIO_BIN).tmp" "$(BLOCKFS_MINIO_BIN)"; \
	fi

# A .deb of the binary, its mount helper names, the man page, completion
# and the example fstab, systemd and autofs files, built by the pinned nfpm
# (fetched and built by the go command) into $(DIST).
NFPM        := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DIST        ?= $(CURDIR)/dist
PKG_VERSION := $(shell sed -n 's/^const version = "\(.*\)"/\1/p' cmd/blockfs/version.go)
package: build
	@mkdir -p $(DIST)
	sed 's|@BLOCKFS_BIN@|$(BIN)/blockfs|' packaging/nfpm.yaml > $(DIST)/.nfpm.yaml
	BLOCKFS_VERSION=$(PKG_VERSION) $(GO) run $(NFPM) package -f $(DIST)/.nfpm.yaml -p deb -t $(DIST)
	@rm -f $(DIST)/.nfpm.yaml

promtool:
	@if [ ! -x "$(BLOCKFS_PROMTOOL)" ]; then \
		set -e; echo "building promtool $(PROMTOOL_VERSION) into $(BLOCKFS_PROMTOOL) (once, a few minutes)"; \
		tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
		GOBIN="$$tmp" GOFLAGS=-buildvcs=false $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION); \
		mkdir -p "$$(dirname "$(BLOCKFS_PROMTOOL)")"; \
		mv "$$tmp/promtool" "$(BLOCKFS_PROMTOOL).tmp" && mv "$(BLOCKFS_PROMTOOL).tmp" "$(BLOCKFS_PROMTOOL)"; \
	fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN) $(DIST)
