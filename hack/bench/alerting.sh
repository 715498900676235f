#!/usr/bin/env bash
# hack/bench/alerting.sh [RUNS] — runs the end-to-end alerting test
# (test/alerting) RUNS times (default 3) and prints, for every measured
# figure (fault → alert delivered at the receiver, heal → resolved), the
# minimum, median and maximum over the runs. Root; needs what `make test`
# installs. EDGEAGENT_ALERT_FOR (default 2s) is passed through.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
OUT=$(mktemp -d /tmp/alerting-bench.XXXXXX)
export EDGEAGENT_ALERTING_RESULTS=$OUT/results.txt EDGEAGENT_REQUIRE_APISERVER=1
for ((run = 1; run <= RUNS; run++)); do
  if ! go test -count=1 -v -run TestAlertingEndToEnd ./test/alerting/ >"$OUT/run-$run.log" 2>&1; then
    echo "run $run failed; log: $OUT/run-$run.log" >&2
    exit 1
  fi
  echo "run $run ok (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
done
# "scenario: what in 4.83s" → group by "scenario: what", durations in seconds.
awk '
  / in [0-9.]+(ms|s)$/ {
    d = $NF; key = $0; sub(/ in [0-9.]+(ms|s)$/, "", key)
    if (d ~ /ms$/) { sub(/ms$/, "", d); d /= 1000 } else { sub(/s$/, "", d) }
    n[key]++; v[key, n[key]] = d + 0
    next
  }
  { other[$0]++ }
  END {
    for (k in n) {
      m = n[k]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[k, j] < v[k, i]) { t = v[k, i]; v[k, i] = v[k, j]; v[k, j] = t }
      printf "%-80s min %.2fs  median %.2fs  max %.2fs  (%d runs)\n", k, v[k, 1], v[k, int((m + 1) / 2)], v[k, m], m
    }
    for (o in other) printf "%s  (%d runs)\n", o, other[o]
  }' "$EDGEAGENT_ALERTING_RESULTS" | sort
echo "logs: $OUT" >&2
