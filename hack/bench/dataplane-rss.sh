#!/usr/bin/env bash
# hack/bench/dataplane-rss.sh [OUT] — the agent's resident memory at 10,000
# services × 4 reals with each rules backend (root). For each backend: a
# throwaway network namespace, the real binary (bin/edgeagent, built by
# `make build`) in standalone mode with BGP off and one LBRoute file of
# 10,000 routes, health checks off; once
# edgeagent_dataplane_virtual_services reaches 10,000 and 5 s have passed,
# VmRSS, VmHWM and the Go heap from /metrics. Then `edgeagent cleanup` and
# the namespace goes. Results go to OUT (default /tmp/dataplane-rss.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/dataplane-rss.txt}
BIN=$PWD/bin/edgeagent
[ -x "$BIN" ] || { echo "no $BIN: run make build" >&2; exit 1; }
N=${RSS_SERVICES:-10000} # RSS_SERVICES: fewer, to try the script
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/routes"
for ((i = 0; i < N; i++)); do
  printf -- '---\napiVersion: apv.arraynetworks.com/v1alpha1\nkind: LBRoute\nmetadata: {name: r%d, namespace: bench}\nspec:\n  vsIP: 10.200.%d.%d\n  ports: [{port: 80, protocol: TCP}]\n  realServers: [{ip: 10.244.1.10}, {ip: 10.244.1.11}, {ip: 10.244.1.12}, {ip: 10.244.1.13}]\n  healthCheck: {type: None}\n' \
    "$i" $((i / 250)) $((1 + i % 250))
done >"$dir/routes/bench.yaml"
for backend in iptables nftables; do
  ns=ea-rss-$backend-$$
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  cat >"$dir/edgeagent.yaml" <<CFG
nodeName: edge
source: {dir: routes}
vipPools: [{cidr: 10.200.0.0/16}]
bgp: {enabled: false}
dataplane: {backend: $backend}
adminAddress: "127.0.0.1:19761"
metricsAddress: "127.0.0.1:19760"
CFG
  start=$(date +%s.%N)
  (cd "$dir" && exec ip netns exec "$ns" "$BIN" run --config "$dir/edgeagent.yaml" >"$dir/agent-$backend.log" 2>&1) &
  pid=$!
  n=0
  for ((t = 0; t < 600; t++)); do
    n=$(ip netns exec "$ns" curl -s 127.0.0.1:19760/metrics | awk '$1 == "edgeagent_dataplane_virtual_services" {print $2}' || true)
    [ "${n:-0}" = "$N" ] && break
    sleep 1
  done
  programmed=$(echo "$(date +%s.%N) - $start" | bc)
  sleep 5
  agent=$(pgrep -P "$pid" -f "$BIN run" || echo "$pid")
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$agent/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$agent/status")
  heap=$(ip netns exec "$ns" curl -s 127.0.0.1:19760/metrics | awk '$1 == "go_memstats_heap_inuse_bytes" {printf "%.1f", $2 / 1048576}')
  echo "backend $backend: $n services programmed ${programmed}s after start; VmRSS $((rss / 1024)) MiB, VmHWM $((hwm / 1024)) MiB, Go heap in use $heap MiB; load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
  kill "$agent" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  (cd "$dir" && ip netns exec "$ns" "$BIN" cleanup --config "$dir/edgeagent.yaml" >/dev/null 2>&1) || true
  ip netns del "$ns"
done
