#!/usr/bin/env bash
# hack/bench/dataplane-backends.sh [OUT] — the dataplane benchmarks of both
# backends in one run (root: throwaway network namespaces): the nftables
# backend's comparisons, which measure the iptables backend in the same
# benchmark, then the iptables backend's own benchmarks for reference. Prints
# the machine's load before and after each step, since the two cores are
# shared; results go to OUT (default /tmp/dataplane-bench.txt) as well.
# docs/benchmarks/dataplane.md records a run. Finally the agent's RSS at
# 10,000 services with each backend (hack/bench/dataplane-rss.sh, the real
# binary). The machine is shared: run it under the team's benchmark lock,
#   flock /var/cache/edgeagent/bench.lock hack/bench/dataplane-backends.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/dataplane-bench.txt}
: >"$OUT"
step() {
  echo "## $* — load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT" || true
  go test ./dataplane/nftables -run XXX -timeout 60m "$@" 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)|bench_test' | tee -a "$OUT" || true
}
{ uname -r; nproc; grep -m1 'model name' /proc/cpuinfo; go version; nft --version; iptables -V; } | tee -a "$OUT" || true
step -bench 'FullSync10k' -benchtime 3x
step -bench 'OneChange10k' -benchtime 300x
# The nftables side again under a real-time priority: what it takes when
# other jobs do not preempt it (the binary is built first, so the compiler
# does not run at that priority).
go test -c -o /tmp/dataplane-backends-nft.test ./dataplane/nftables
echo "## OneChange10k/nftables under chrt -f 10 — load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
chrt -f 10 /tmp/dataplane-backends-nft.test -test.run XXX -test.bench 'OneChange10k/nftables' -test.benchtime 300x 2>&1 | grep -E '^Benchmark' | tee -a "$OUT" || true
step -bench 'SyncNoChange10k' -benchtime 300x
step -bench 'ConnLatency10k' -benchtime 1x
step -bench 'SourceHashMovement10k' -benchtime 1x
step -bench 'Heap10k' -benchtime 1x
step -bench 'Adopt10k' -benchtime 3x
step -bench 'CLIvsNetlink' -benchtime 1x
echo "## iptables backend's own (dataplane) — load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT" || true
go test ./dataplane -run XXX -timeout 60m -bench 'DesiredUpdate|Adopt' -benchtime 3x 2>&1 | grep -E '^(Benchmark|ok|FAIL)' | tee -a "$OUT" || true
echo "## agent RSS at 10,000 × 4 (hack/bench/dataplane-rss.sh) — load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT" || true
make build >/dev/null
hack/bench/dataplane-rss.sh "$OUT.rss" 2>&1 | tee -a "$OUT" || true
echo "## done — load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT" || true
