#!/usr/bin/env bash
# hack/bench/demo.sh [RUNS] — times warm "make demo" / "make demo-down" cycles
# in both modes (cluster, then standalone with K8S_BIN=/nonexistent) and
# checks after every teardown that nothing is left: no demo namespace, no
# process under the demo's directory, no directory. Prints one line per
# cycle; the "up" time includes install-deps (a no-op when everything is
# installed) and make build (cached). Never run it next to a running demo.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-2}
PREFIX=${DEMO_PREFIX:-demo-}
DIR=${DEMO_DIR:-/run/edgeagent-demo}
LOGS=$(mktemp -d /tmp/demo-bench.XXXXXX)

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

make -s demo-down >/dev/null 2>&1 || true
printf '%-10s %3s %8s %8s %s\n' mode run up_s down_s leftovers
fail=0
for ((run = 1; run <= RUNS; run++)); do
  for mode in cluster standalone; do
    extra=()
    [[ $mode == standalone ]] && extra=(K8S_BIN=/nonexistent)
    t0=$(now)
    if ! make demo "${extra[@]}" >"$LOGS/$mode-$run.log" 2>&1; then
      echo "make demo ($mode, run $run) failed; log: $LOGS/$mode-$run.log" >&2
      fail=1
    fi
    t1=$(now)
    want="(standalone mode)"
    [[ $mode == cluster ]] && want="(kubernetes mode)"
    grep -qF "$want" "$LOGS/$mode-$run.log" || { echo "run $run: the agent did not report $want" >&2; fail=1; }
    make demo-down >"$LOGS/$mode-$run-down.log" 2>&1 || fail=1
    t2=$(now)
    left=()
    ip netns list | grep -q "^$PREFIX" && left+=("namespaces")
    pgrep -f -- "$DIR" >/dev/null && left+=("processes")
    [[ -e $DIR ]] && left+=("$DIR")
    ((${#left[@]} == 0)) || fail=1
    printf '%-10s %3d %8s %8s %s\n' "$mode" "$run" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "${left[*]:-none}"
  done
done
echo "logs: $LOGS"
exit "$fail"
