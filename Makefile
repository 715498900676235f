# edgeagent — see README.md.
#   make build     build bin/edgeagent
#   make test      install test dependencies (idempotent, cached), lint, check
#                  generated files, run every test (unit, kernel, BGP interop,
#                  apiserver, end to end)
#   make image     the container image (no Docker): bin/edgeagent-image.tar
#                  (docker-archive) and bin/edgeagent-oci/ (OCI layout)
#   make demo      the whole agent in a namespace test bed; make demo-down
#   make generate  regenerate deepcopy, the CRD manifest, the dashboard and
#                  the Helm chart's generated files
#   make chart-check  helm lint + helm template of deploy/helm/edgeagent
#   make lint      gofmt, go vet, the project's own checks (hack/lint),
#                  staticcheck

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

.PHONY: all build image test test-deps lint generate verify-generated chart-check demo demo-down clean bench

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/edgeagent

# The image: pinned Debian packages (hack/image/debs.lock) + the static
# agent, assembled with go-containerregistry (hack/image.sh).
image:
	VERSION=$(VERSION) hack/image.sh

# controller-gen: deepcopy and the CRDs; hack/gen-deploy: the Grafana
# dashboard and the Helm chart's copies of the CRDs, rules and dashboard,
# and its values.schema.json.
GENERATED   := api deploy/daemonset/crds deploy/daemonset/monitoring/dashboards \
               deploy/helm/edgeagent/crds deploy/helm/edgeagent/files \
               deploy/helm/edgeagent/values.schema.json

generate:
	$(GO) tool controller-gen object paths=./api/... crd:crdVersions=v1 output:crd:artifacts:config=deploy/daemonset/crds
	$(GO) run ./hack/gen-deploy

# Fails when the generated deepcopy or CRD differ from the API types.
verify-generated:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	for p in $(GENERATED); do mkdir -p $$tmp/$$(dirname $$p); cp -r $$p $$tmp/$$p; done; \
	$(MAKE) -s generate; \
	stale=0; for p in $(GENERATED); do diff -r $$tmp/$$p $$p >/dev/null || stale=1; done; \
	if [ $$stale = 1 ]; then \
	  echo "generated files are stale: run 'make generate' and commit" >&2; \
	  for p in $(GENERATED); do diff -r $$tmp/$$p $$p; done; exit 1; fi

# gofmt, go vet, the project's own analyzers (hack/lint: log keys, error
# prefixes, the one golden and polling helper; run as a vet tool so the go
# command caches their results) and staticcheck (its default set of
# checks), staticcheck built by hack/get-tools.sh.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:" >&2; echo "$$out" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) build -o bin/lint ./hack/lint
	$(GO) vet -vettool=$(CURDIR)/bin/lint ./...
	@hack/get-tools.sh $(TOOLS) 2>/dev/null || hack/get-tools.sh $(TOOLS)
	$(TOOLS)/staticcheck ./...

# Where hack/get-apiserver.sh caches kube-apiserver and etcd (outside the
# repository; cold build ~6 min on 2 cores, warm: instant). An
# EDGEAGENT_K8S_BIN in the environment is honoured (the tests read it too).
K8S_BIN     ?= $(or $(EDGEAGENT_K8S_BIN),/var/cache/edgeagent/k8s-bin)
export EDGEAGENT_K8S_BIN := $(K8S_BIN)

# Where hack/get-tools.sh caches helm (built from the Go module proxy).
TOOLS       ?= $(or $(EDGEAGENT_TOOLS),/var/cache/edgeagent/tools)
export EDGEAGENT_TOOLS := $(TOOLS)
HELM        := $(TOOLS)/helm
CHART       := deploy/helm/edgeagent

test-deps:
	hack/install-deps.sh
	hack/get-apiserver.sh $(K8S_BIN)
	hack/get-k8s-node.sh $(K8S_BIN)
	hack/install-monitoring.sh
	hack/get-tools.sh $(TOOLS)

# The chart lints clean (strict: warnings fail) and renders with its
# defaults and with everything switched on; deploy/helm's Go tests compare
# the rendering with the kustomize base object by object.
chart-check:
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set monitoring.serviceMonitor.enabled=true,monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true
	$(HELM) template edgeagent $(CHART) --namespace edgeagent-system --include-crds >/dev/null
	$(HELM) template edgeagent $(CHART) --namespace edgeagent-system --set monitoring.serviceMonitor.enabled=true,monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true >/dev/null

# Nothing may skip here (EDGEAGENT_REQUIRE_ALL, package internal/testreq):
# test-deps installed and built what the tests need, the image is built
# first, and make test runs as root. CI=true does the same.
test: test-deps lint verify-generated chart-check build image
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
