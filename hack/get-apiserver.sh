#!/usr/bin/env bash
# hack/get-apiserver.sh [DEST]
#
# Builds the two binaries the Kubernetes integration tests need — kube-apiserver
# and etcd — from the Go module proxy and drops them into DEST
# (default /var/cache/edgeagent/k8s-bin, outside the repository: the binaries
# are ~150 MB and must never be committed).
#
#  * kube-apiserver comes from the k8s.io/kubernetes module, built in a
#    throwaway module that pins its staging modules (hack/lib/k8smodule.sh).
#  * etcd comes from go.etcd.io/etcd/server/v3, built inside a scratch module
#    (its own go.mod carries replace directives that `go install` refuses).
#    If that fails, Debian's etcd-server package is unpacked (not installed).
#
# Idempotent: when DEST already holds binaries reporting the wanted versions
# the script exits in well under a second. A cold build costs ~6.5 minutes of
# both cores and ~3 GiB of Go build cache.
#
# Environment: K8S_VERSION (1.37.2), ETCD_VERSION (3.6.16), ETCD_FROM (go|apt).
# Tests find the binaries through EDGEAGENT_K8S_BIN (default: the same DEST).
set -euo pipefail

DEST=${1:-${EDGEAGENT_K8S_BIN:-/var/cache/edgeagent/k8s-bin}}
K8S_VERSION=${K8S_VERSION:-1.37.2}; K8S_VERSION=${K8S_VERSION#v}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}; ETCD_VERSION=${ETCD_VERSION#v}
ETCD_FROM=${ETCD_FROM:-go}

say() { printf 'get-apiserver: %s\n' "$*" >&2; }
# shellcheck source=hack/lib/k8smodule.sh
. "$(dirname "$0")/lib/k8smodule.sh"

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)

apiserver_ok() {
  local out
  [ -x "$DEST/kube-apiserver" ] || return 1
  out=$("$DEST/kube-apiserver" --version 2>/dev/null) || return 1
  [ "$out" = "Kubernetes v$K8S_VERSION" ]
}
etcd_ok() {
  local out
  [ -x "$DEST/etcd" ] || return 1
  out=$("$DEST/etcd" --version 2>/dev/null) || return 1
  # An earlier apt fallback counts as done so reruns stay cheap.
  [ -f "$DEST/.etcd-from-apt" ] && return 0
  [[ $out == *"etcd Version: $ETCD_VERSION"* ]]
}

if apiserver_ok && etcd_ok; then
  say "kube-apiserver v$K8S_VERSION and etcd already in $DEST"
  exit 0
fi

command -v go >/dev/null || { say "go is not on PATH"; exit 1; }
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/edgeagent-k8s-build.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
# A go.work further up must not leak into the scratch modules.
export GOWORK=off GOFLAGS=-mod=mod

build_apiserver() {
  local dir="$SCRATCH/apiserver"
  say "downloading k8s.io/kubernetes v$K8S_VERSION"
  k8s_builder_module "$dir" "$K8S_VERSION"
  (cd "$dir" && go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION")
  say "compiling kube-apiserver (about 5.5 minutes on 2 cores)"
  (cd "$dir" && go build -trimpath -ldflags "$(k8s_ldflags "$K8S_VERSION")" -o "$DEST/.kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver)
  mv -f "$DEST/.kube-apiserver.new" "$DEST/kube-apiserver"
}

build_etcd() {
  local dir="$SCRATCH/etcd"
  mkdir -p "$dir"
  printf 'module edgeagent.local/etcdbuild\n\ngo 1.26.0\n' > "$dir/go.mod"
  say "compiling etcd v$ETCD_VERSION"
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" &&
    go build -trimpath -ldflags "-s -w" -o "$DEST/.etcd.new" go.etcd.io/etcd/server/v3) || return 1
  mv -f "$DEST/.etcd.new" "$DEST/etcd"
  rm -f "$DEST/.etcd-from-apt"
}

etcd_from_apt() {
  local dir="$SCRATCH/apt" deb
  mkdir -p "$dir"
  say "unpacking Debian's etcd-server (not installing it)"
  (cd "$dir" && apt-get download etcd-server >/dev/null 2>&1) ||
    { apt-get update >/dev/null && (cd "$dir" && apt-get download etcd-server); }
  local debs=("$dir"/etcd-server_*.deb)
  deb=${debs[0]}
  [ -f "$deb" ] || { say "apt-get download etcd-server left no .deb in $dir"; exit 1; }
  dpkg-deb -x "$deb" "$dir/root"
  install -m 0755 "$dir/root/usr/bin/etcd" "$DEST/.etcd.new"
  mv -f "$DEST/.etcd.new" "$DEST/etcd"
  touch "$DEST/.etcd-from-apt"
}

apiserver_ok || build_apiserver
if ! etcd_ok; then
  if [ "$ETCD_FROM" = apt ]; then
    etcd_from_apt
  elif ! build_etcd; then
    say "etcd build failed; falling back to Debian's etcd-server"
    etcd_from_apt
  fi
fi

"$DEST/kube-apiserver" --version
out=$("$DEST/etcd" --version); echo "${out%%$'\n'*}"
say "ready: $DEST"
