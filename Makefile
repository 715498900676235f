# edgeagent — see README.md.
#   make build     build bin/edgeagent
#   make test      install test dependencies (idempotent, cached), lint, check
#                  generated files, run every test (unit, kernel, BGP interop,
#                  apiserver, end to end)
#   make image     the container image (no Docker): bin/edgeagent-image.tar
#                  (docker-archive) and bin/edgeagent-oci/ (OCI layout)
#   make demo      the whole agent in a namespace test bed; make demo-down
#   make generate  regenerate deepcopy and the CRD manifest
#   make lint      gofmt + go vet

SHELL       := /usr/bin/env bash
GO          ?= go
BIN         := bin/edgeagent
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS     := -X github.com/arraynetworks/edgeagent/version.Version=$(VERSION) \
               -X github.com/arraynetworks/edgeagent/version.Commit=$(COMMIT)
# Tests of several packages start namespaces, BIRD and FRR at once: they are
# independent, but two cores are all we have.
TEST_FLAGS  ?= -count=1 -timeout 20m
export GOFLAGS ?= -buildvcs=false

.PHONY: all build image test test-deps lint generate verify-generated demo demo-down clean bench

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/edgeagent

# The image: pinned Debian packages (hack/image/debs.lock) + the static
# agent, assembled with go-containerregistry (hack/image.sh).
image:
	VERSION=$(VERSION) hack/image.sh

generate:
	$(GO) tool controller-gen object paths=./api/... crd:crdVersions=v1 output:crd:artifacts:config=deploy/daemonset/crds

# Fails when the generated deepcopy or CRD differ from the API types.
verify-generated:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	cp -r api deploy/daemonset/crds $$tmp/; \
	$(MAKE) -s generate; \
	if ! diff -r $$tmp/api api >/dev/null || ! diff -r $$tmp/crds deploy/daemonset/crds >/dev/null; then \
	  echo "generated files are stale: run 'make generate' and commit" >&2; \
	  diff -r $$tmp/api api; diff -r $$tmp/crds deploy/daemonset/crds; exit 1; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:" >&2; echo "$$out" >&2; exit 1; fi
	$(GO) vet ./...

# Where hack/get-apiserver.sh caches kube-apiserver and etcd (outside the
# repository; cold build ~6 min on 2 cores, warm: instant). An
# EDGEAGENT_K8S_BIN in the environment is honoured (the tests read it too).
K8S_BIN     ?= $(or $(EDGEAGENT_K8S_BIN),/var/cache/edgeagent/k8s-bin)
export EDGEAGENT_K8S_BIN := $(K8S_BIN)

test-deps:
	hack/install-deps.sh
	hack/get-apiserver.sh $(K8S_BIN)
	hack/get-k8s-node.sh $(K8S_BIN)
	hack/install-promtool.sh

# Nothing may skip here (EDGEAGENT_REQUIRE_ALL, package internal/testreq):
# test-deps installed and built what the tests need, the image is built
# first, and make test runs as root. CI=true does the same.
test: test-deps lint verify-generated build image
	EDGEAGENT_REQUIRE_ALL=1 $(GO) test $(TEST_FLAGS) ./...

# The demo (hack/demo.sh; docs/demo.md): cluster mode when the apiserver
# binaries are in K8S_BIN, else standalone (or force: DEMO_MODE=standalone).
# It stays up after "make demo" (DEMO_KEEP=0: tear down at the end).
demo:
	hack/demo.sh up

demo-down:
	hack/demo.sh down

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf bin
