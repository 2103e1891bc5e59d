# blockfs: the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
BIN     := $(CURDIR)/bin
export GOFLAGS := -buildvcs=false

.PHONY: all build demo test check vet fmt-check unit bench fuzz clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/blockfs ./cmd/blockfs

# The main job: import testdata/ into a local store, mount it, read, show stats.
demo: build
	./scripts/demo.sh

# The whole test suite: static checks, then every test with the race detector.
test: check unit

check: vet fmt-check

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN)
