# blockfs: the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
BIN     := $(CURDIR)/bin
export GOFLAGS := -buildvcs=false

.PHONY: all build demo test check vet fmt-check staticcheck unit bench fuzz clean minio promtool

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
	$(GO) build -o $(BIN)/blockfs ./cmd/blockfs

# The main job: import testdata/ into a local store, mount it, read, show stats.
demo: build
	./scripts/demo.sh

# The whole test suite: static checks, then every test with the race detector.
test: check minio promtool unit

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
	rm -rf $(BIN)
