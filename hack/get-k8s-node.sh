#!/usr/bin/env bash
# hack/get-k8s-node.sh [DEST]
#
# Builds what the real-cluster suite (test/cluster) needs besides the
# apiserver and etcd of hack/get-apiserver.sh: kubelet,
# kube-controller-manager, kube-scheduler and kubectl, from the Go module
# proxy, into DEST (default /var/cache/edgeagent/k8s-bin, outside the
# repository), in one `go build` so the four share their compiled packages.
# Same version and same builder module as the apiserver
# (hack/lib/k8smodule.sh).
#
# Idempotent: when DEST holds all four at the wanted version it exits at
# once. Cold: about 6 minutes on 2 cores after the apiserver's build (the
# packages they share are in the Go build cache), 8-12 with an empty cache;
# peak memory ~2.9 GiB.
#
# Environment: K8S_VERSION (1.37.2).
set -euo pipefail

DEST=${1:-${EDGEAGENT_K8S_BIN:-/var/cache/edgeagent/k8s-bin}}
K8S_VERSION=${K8S_VERSION:-1.37.2}; K8S_VERSION=${K8S_VERSION#v}
CMDS=(kubelet kube-controller-manager kube-scheduler kubectl)

say() { printf 'get-k8s-node: %s\n' "$*" >&2; }
# shellcheck source=hack/lib/k8smodule.sh
. "$(dirname "$0")/lib/k8smodule.sh"

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)

have() {
  local c=$1 out
  [ -x "$DEST/$c" ] || return 1
  if [ "$c" = kubectl ]; then
    # Read the whole output, not `| head -n1`: under pipefail, kubectl
    # writing its second line after head has exited dies of SIGPIPE, and
    # a good kubectl would read as missing (about 1 run in 5).
    out=$("$DEST/kubectl" version --client 2>/dev/null) || return 1
    [ "${out%%$'\n'*}" = "Client Version: v$K8S_VERSION" ]
  else
    out=$("$DEST/$c" --version 2>/dev/null) || return 1
    [ "$out" = "Kubernetes v$K8S_VERSION" ]
  fi
}

missing=()
for c in "${CMDS[@]}"; do have "$c" || missing+=("$c"); done
if ((${#missing[@]} == 0)); then
  say "${CMDS[*]} v$K8S_VERSION already in $DEST"
  exit 0
fi

command -v go >/dev/null || { say "go is not on PATH"; exit 1; }
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/edgeagent-k8s-node.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
export GOWORK=off GOFLAGS=-mod=mod
dir=$SCRATCH/node
say "downloading k8s.io/kubernetes v$K8S_VERSION"
k8s_builder_module "$dir" "$K8S_VERSION"
pkgs=()
for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
(cd "$dir" && for p in "${pkgs[@]}"; do go get "$p@v$K8S_VERSION"; done)
say "compiling ${missing[*]} (about 6 minutes on 2 cores)"
mkdir -p "$SCRATCH/out"
(cd "$dir" && go build -trimpath -ldflags "$(k8s_ldflags "$K8S_VERSION")" -o "$SCRATCH/out/" "${pkgs[@]}")
for c in "${missing[@]}"; do mv -f "$SCRATCH/out/$c" "$DEST/$c"; done
for c in "${CMDS[@]}"; do have "$c" || { say "$c in $DEST does not report v$K8S_VERSION"; exit 1; }; done
say "ready: ${CMDS[*]} in $DEST"
