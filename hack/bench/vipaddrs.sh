#!/usr/bin/env bash
# hack/bench/vipaddrs.sh ["K N"]... — what the kernel's VIP address inserts
# cost when K agents share one kernel, as they do in hack/bench/lbrscale.sh
# (root). For each "K N" pair: K throwaway network namespaces, each with a
# bridge named edge-vip0 (the agent's fallback when the kernel has no dummy
# driver, as on the benchmark machine), then N /32 addresses added to all
# of them at once, one `ip -batch` per namespace (one RTM_NEWADDR per
# address, as the agent sends them). Prints the wall time until every
# address is in and the system CPU time each namespace's inserts took.
# Default pairs: "1 10000" "10 10000" "1 5000" "5 5000".
#
# Why: the kernel walks a device's whole address list on every insert, so N
# addresses on one device cost O(N²) in the kernel; namespaces share the
# machine's caches and the rtnl lock, so K agents on one machine pay far
# more than K machines would (docs/benchmarks/kube.md, "Fourth pass").
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "vipaddrs.sh: needs root (network namespaces)" >&2; exit 1; }
pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || pairs=("1 10000" "10 10000" "1 5000" "5 5000")
dir=$(mktemp -d)
namespaces=()
drop() {
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  namespaces=()
}
trap 'drop; rm -rf "$dir"' EXIT
for pair in "${pairs[@]}"; do
  read -r K N <<<"$pair"
  for ((i = 0; i < N; i++)); do
    echo "addr add 10.200.$((i / 250)).$((1 + i % 250))/32 dev edge-vip0"
  done >"$dir/batch"
  for ((k = 1; k <= K; k++)); do
    ns=ea-vipaddrs-$$-$k
    ip netns add "$ns"
    namespaces+=("$ns")
    ip -n "$ns" link add edge-vip0 type bridge
    ip -n "$ns" link set edge-vip0 up
  done
  start=$(date +%s%N)
  pids=()
  for ((k = 1; k <= K; k++)); do
    # bash's time keyword: this ip's own user and system CPU.
    (
      TIMEFORMAT=%S
      { time ip -n "${namespaces[k - 1]}" -batch "$dir/batch"; } 2>"$dir/sys-$k"
    ) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  end=$(date +%s%N)
  sys=()
  for ((k = 1; k <= K; k++)); do
    n=$(ip -n "${namespaces[k - 1]}" -4 -o addr show dev edge-vip0 | wc -l)
    [ "$n" = "$N" ] || { echo "namespace $k holds $n addresses, want $N" >&2; exit 1; }
    sys+=("$(tail -1 "$dir/sys-$k")")
  done
  printf 'K=%d N=%d: every address in after %d ms; system CPU per namespace (s): %s\n' \
    "$K" "$N" $(((end - start) / 1000000)) "${sys[*]}"
  drop
done
