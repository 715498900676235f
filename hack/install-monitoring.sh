#!/usr/bin/env bash
# Installs Debian's prometheus (the server and promtool) and
# prometheus-alertmanager (alertmanager and amtool) idempotently: a second
# run with everything present does nothing and takes milliseconds.
#   promtool      checks and unit-tests the alert rules (deploy/daemonset/monitoring)
#   prometheus,   the end-to-end alerting test (test/alerting) runs its own
#   alertmanager  instances on loopback
# The packaged services are stopped and disabled: tests start their own
# instances with their own configuration and data directories.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)

stop_services() {
  local svc
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
    service "$svc" stop >/dev/null 2>&1 || true
  done
}

if ((${#need[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-monitoring: need root to install: ${need[*]}" >&2
  exit 1
fi
echo "install-monitoring: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another engineer's apt run may hold the dpkg lock: wait for it rather
# than fail (apt's own lock timeout).
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
stop_services
command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null
