#!/usr/bin/env bash
# hack/get-apiserver.sh [DEST]
#
# Builds the two binaries the Kubernetes integration tests need — kube-apiserver
# and etcd — from the Go module proxy and drops them into DEST
# (default /var/cache/edgeagent/k8s-bin, outside the repository: the binaries
# are ~150 MB and must never be committed).
#
#  * kube-apiserver comes from the k8s.io/kubernetes module. That module
#    replaces its staging modules (k8s.io/api, k8s.io/client-go, ...) with
#    local ./staging paths, which a dependent module cannot see, so we build it
#    from a throwaway module whose replace block pins every staging module to
#    the matching v0.X.Y release.
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
  local dir="$SCRATCH/apiserver" modfile staging gover minor flags
  mkdir -p "$dir"
  say "downloading k8s.io/kubernetes v$K8S_VERSION"
  modfile=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$modfile" ] || { say "no go.mod for k8s.io/kubernetes v$K8S_VERSION"; return 1; }
  # Every "k8s.io/x => ./staging/src/k8s.io/x" line names one staging module.
  staging=$(awk '/^replace \(/{blk=1; next} blk && /^\)/{blk=0} blk && $3 ~ /^\.\/staging\// {print $1}' "$modfile")
  [ -n "$staging" ] || { say "no staging replace block in $modfile"; return 1; }
  gover=$(awk '$1=="go"{print $2; exit}' "$modfile")
  {
    printf 'module edgeagent.local/apiserverbuild\n\ngo %s\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "${gover:-1.26.0}" "$K8S_VERSION"
    for m in $staging; do printf '\t%s => %s v0.%s\n' "$m" "$m" "${K8S_VERSION#1.}"; done
    printf ')\n'
  } > "$dir/go.mod"
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  flags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$dir" && go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION")
  say "compiling kube-apiserver (about 5.5 minutes on 2 cores)"
  (cd "$dir" && go build -trimpath -ldflags "$flags" -o "$DEST/.kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver)
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
  deb=$(ls "$dir"/etcd-server_*.deb | head -n1)
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
