# tokend: the commands README.md documents. `make test` is what CI runs.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 10s
# staticcheck, pinned; `go run` fetches it through the module proxy and
# leaves go.mod alone.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build test vet unit fuzz dev bench systemd-check

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tokend ./cmd/tokend

dev:
	$(GO) run ./cmd/tokend dev

test: vet unit fuzz systemd-check

vet:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l cmd internal deploy)" || { gofmt -l cmd internal deploy; echo "gofmt: files above need formatting"; exit 1; }

# The bench's tests compile its C load generator: .ci/cc installs gcc
# with apt-get when no C compiler is on the machine.
unit:
	bash .ci/cc
	$(GO) test -race -count=1 -timeout 20m ./...

# Every fuzz target, briefly, on top of its seed corpus (which `unit` runs).
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash .ci/fuzz

# The unit file: `systemd-analyze verify` clean and exposure <= 2.0
# (installs systemd's analyzer with apt-get when it is missing).
systemd-check:
	bash deploy/systemd/check.sh

# Performance figures against same-run baselines (see README, Performance).
bench:
	bash .ci/cc
	$(GO) run ./cmd/tokend-bench $(BENCHFLAGS)
