#!/usr/bin/env bash
# CPU of the health-check prober: 10,000 reals probed every 5 s (TCP and
# HTTP). The prober runs in one network namespace, the 10,000 listeners in
# another, joined by a veth pair whose receive side uses threaded NAPI: the
# kernel then processes received packets in its own threads (as it would a
# NIC's in softirq) and the prober's getrusage counts the prober's own work,
# not the servers' half of every handshake as it would on loopback.
#
#   sudo hack/bench/healthcheck.sh [seconds] [reals]
#
# Needs root, iproute2 and ethtool.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "needs root: creates network namespaces" >&2; exit 1; }
command -v ethtool >/dev/null || { echo "needs ethtool (apt-get install ethtool)" >&2; exit 1; }
secs=${1:-30}
reals=${2:-10000}

p=hcb$$p s=hcb$$s
cleanup() { ip netns del "$p" 2>/dev/null || true; ip netns del "$s" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$p"
ip netns add "$s"
# One queue each way: veth bypasses NAPI for packets sent on a TX queue
# that has no matching RX queue.
ip -n "$p" link add hcb0 numtxqueues 1 numrxqueues 1 type veth peer name hcb1 numtxqueues 1 numrxqueues 1
# GRO on turns NAPI on for veth, and veth hands a packet to NAPI only when
# the sending end does no TSO; set both ends before one moves away.
for dev in hcb0 hcb1; do ip netns exec "$p" ethtool -K "$dev" gro on tso off >/dev/null; done
ip -n "$p" link set hcb1 netns "$s"
ip -n "$p" addr add 10.255.0.1/30 dev hcb0
ip -n "$s" addr add 10.255.0.2/30 dev hcb1
for ns in "$p" "$s"; do ip -n "$ns" link set lo up; done
ip -n "$p" link set hcb0 up
ip -n "$s" link set hcb1 up
ip netns exec "$p" sh -c 'echo 1 > /sys/class/net/hcb0/threaded'
ip netns exec "$s" sh -c 'echo 1 > /sys/class/net/hcb1/threaded'

go test -c -o "/tmp/healthcheck-bench.$$" ./healthcheck
trap 'cleanup; rm -f /tmp/healthcheck-bench.$$' EXIT
echo "machine: $(nproc) cores, $(go version | cut -d' ' -f3), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
ip netns exec "$p" env EDGEAGENT_BENCH_SERVER_NETNS="$s" EDGEAGENT_BENCH_SERVER_ADDR=10.255.0.2 \
	EDGEAGENT_BENCH_SECONDS="$secs" EDGEAGENT_BENCH_REALS="$reals" \
	"/tmp/healthcheck-bench.$$" -test.run '^$' -test.bench ProberCPU -test.benchtime 1x -test.v
