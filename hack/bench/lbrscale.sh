#!/usr/bin/env bash
# LBRoute status at scale, against the real kube-apiserver + etcd
# (docs/benchmarks/kube.md, "Status at scale").
#
#   sudo hack/bench/lbrscale.sh [--rev REV] [--out FILE] ROW...
#
# Each ROW is one run of hack/bench/lbrscale (a fresh apiserver every time,
# so memory and etcd's file belong to that row alone): K edgeagent processes,
# each in its own network namespace with BGP off, and N LBRoutes with 4
# static reals created before they start. Rows:
#
#   1k1 1k5 1k5q500 5k5 10k3 10k10   N routes × K agents (q500: statusQPS 500)
#   5k5nft 10k10nft   the same with dataplane.backend nftables
#   change10k change10knft   10,000 × 3, then 10 single changes (iptables /
#              nftables backend)
#   ops        1,000 × 3, then: 10 single changes, a non-leader and the leader
#              restarted, a 4th agent joining, a node leaving (Node deleted)
#   rss10k     10,000 × 1 with a heap profile of the agent
#   svc10k     10,000 service-form routes (a Service + EndpointSlice each) × 1
#   sim50 sim100   1,000 routes × (1 agent + 50/100 lightweight agents)
#   sim50x5k   5,000 routes × (1 agent + 50 lightweight agents)
#   sim4x5k sim9x10k   5,000 × (1 + 4 light) and 10,000 × (1 + 9 light),
#              nftables: the goal rows with one full agent, so that one
#              kernel holds one node's VIPs
#   "custom:FLAGS"  any lbrscale flags, e.g. "custom:-routes 2000 -agents 2"
#
# --rev REV measures another revision (git archive of REV, built into
# /var/tmp/lbrscale/<commit>); the default is this checkout. The measuring
# tool is always this checkout's. Results are appended as JSON lines to
# --out (default /var/tmp/lbrscale/results.jsonl) and printed as table rows.
# The big rows saturate both cores for minutes: run them once, not in a loop.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
export GOFLAGS=${GOFLAGS:--buildvcs=false}
here=$(cd "$(dirname "$0")/../.." && pwd)
rev="" out=/var/tmp/lbrscale/results.jsonl
while [[ $# -gt 0 ]]; do
  case $1 in
    --rev) rev=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || { sed -n '2,30p' "$0"; exit 2; }
[[ $EUID -eq 0 ]] || { echo "needs root (network namespaces)" >&2; exit 1; }
mkdir -p /var/tmp/lbrscale "$(dirname "$out")"

# The tree under test: bin/edgeagent, bin/simnode (when it has one) and
# deploy/daemonset.
if [[ -n $rev ]]; then
  commit=$(git -C "$here" rev-parse --short=12 "$rev")
  tree=/var/tmp/lbrscale/$commit
  if [[ ! -x $tree/bin/edgeagent ]]; then
    rm -rf "$tree"; mkdir -p "$tree"
    git -C "$here" archive "$commit" | tar -x -C "$tree"
    echo "$commit" >"$tree/COMMIT"
  fi
else
  tree=$here
fi
echo "building the agent of $tree" >&2
(cd "$tree" && go build -o bin/edgeagent ./cmd/edgeagent)
if [[ -d $tree/hack/bench/simnode ]]; then
  (cd "$tree" && go build -o bin/simnode ./hack/bench/simnode)
fi
tool=/var/tmp/lbrscale/lbrscale-tool
(cd "$here" && go build -o "$tool" ./hack/bench/lbrscale)

for row in "$@"; do
  case $row in
    1k1) args="-routes 1000 -agents 1" ;;
    1k5) args="-routes 1000 -agents 5" ;;
    1k5q500) args="-routes 1000 -agents 5 -status-qps 500 -status-burst 1000" ;;
    5k5) args="-routes 5000 -agents 5" ;;
    10k3) args="-routes 10000 -agents 3" ;;
    10k10) args="-routes 10000 -agents 10" ;;
    5k5nft) args="-routes 5000 -agents 5 -backend nftables" ;;
    10k10nft) args="-routes 10000 -agents 10 -backend nftables" ;;
    change10k) args="-routes 10000 -agents 3 -changes 10" ;;
    change10knft) args="-routes 10000 -agents 3 -changes 10 -backend nftables" ;;
    ops) args="-routes 1000 -agents 3 -changes 10 -restart -join -leave" ;;
    rss10k) args="-routes 10000 -agents 1 -pprof" ;;
    svc10k) args="-routes 10000 -agents 1 -services -pprof" ;;
    sim50) args="-routes 1000 -agents 1 -sim 50" ;;
    sim100) args="-routes 1000 -agents 1 -sim 100" ;;
    sim50x5k) args="-routes 5000 -agents 1 -sim 50" ;;
    sim4x5k) args="-routes 5000 -agents 1 -sim 4 -backend nftables" ;;
    sim9x10k) args="-routes 10000 -agents 1 -sim 9 -backend nftables" ;;
    custom:*) args=${row#custom:} ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
  echo "=== $row: lbrscale $args (tree $tree)" >&2
  # shellcheck disable=SC2086
  "$tool" -tree "$tree" -label "$row" -out "$out" $args
done
echo "=== all runs in $out" >&2
"$tool" -table "$out"
