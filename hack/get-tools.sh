#!/usr/bin/env bash
# hack/get-tools.sh [DEST]
#
# Builds the command-line tools the tests need from the Go module proxy into
# DEST (default /var/cache/edgeagent/tools, outside the repository, like
# hack/get-apiserver.sh's binaries):
#   helm         `helm lint` / `helm template` of deploy/helm/edgeagent, and the
#                chart's install / upgrade / uninstall against a real apiserver
#   staticcheck  `make lint` (honnef.co/go/tools; its default checks, with
#                the project's choices in staticcheck.conf)
#
# Idempotent: when DEST already holds the tools reporting the wanted versions
# the script exits at once. A cold build costs ~3 minutes of both cores on an
# idle machine for helm (it pulls in client-go, kubectl's libraries and oras),
# under a minute for staticcheck.
#
# Environment: HELM_VERSION (v4.3.1), STATICCHECK_VERSION (v0.8.2). Tests
# find the tools through EDGEAGENT_TOOLS (default: the same DEST).
set -euo pipefail

DEST=${1:-${EDGEAGENT_TOOLS:-/var/cache/edgeagent/tools}}
HELM_VERSION=${HELM_VERSION:-v4.3.1}
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}

say() { printf 'get-tools: %s\n' "$*" >&2; }

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)

helm_ok() {
  [ -x "$DEST/helm" ] && [ "$("$DEST/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]
}

staticcheck_ok() {
  [ -x "$DEST/staticcheck" ] && "$DEST/staticcheck" -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"
}

if helm_ok && staticcheck_ok; then
  say "helm $HELM_VERSION and staticcheck $STATICCHECK_VERSION already in $DEST"
  exit 0
fi
command -v go >/dev/null || { say "go is not on PATH"; exit 1; }
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/edgeagent-tools.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
# Built as modules of their own: the project's go.mod and a go.work further
# up must not steer the tools' dependency versions.
export GOWORK=off GOFLAGS=-mod=mod
if ! helm_ok; then
  major=${HELM_VERSION%%.*}
  say "building helm $HELM_VERSION (a few minutes on 2 cores, once)"
  (cd "$SCRATCH" && GOBIN="$SCRATCH/bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/$major/cmd/helm@$HELM_VERSION")
  install -m 0755 "$SCRATCH/bin/helm" "$DEST/.helm.new"
  mv -f "$DEST/.helm.new" "$DEST/helm"
  helm_ok || { say "built helm does not report $HELM_VERSION: $("$DEST/helm" version 2>&1)"; exit 1; }
  say "ready: $DEST/helm $HELM_VERSION"
fi
if ! staticcheck_ok; then
  say "building staticcheck $STATICCHECK_VERSION"
  (cd "$SCRATCH" && GOBIN="$SCRATCH/bin" go install -trimpath "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION")
  install -m 0755 "$SCRATCH/bin/staticcheck" "$DEST/.staticcheck.new"
  mv -f "$DEST/.staticcheck.new" "$DEST/staticcheck"
  staticcheck_ok || { say "built staticcheck does not report $STATICCHECK_VERSION: $("$DEST/staticcheck" -version 2>&1)"; exit 1; }
  say "ready: $DEST/staticcheck $STATICCHECK_VERSION"
fi
