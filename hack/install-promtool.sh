#!/usr/bin/env bash
# Installs promtool (Debian's prometheus package) idempotently: a second run
# with promtool present does nothing. Used to check the alert rules in
# deploy/daemonset/monitoring (go test ./deploy/daemonset/monitoring/).
# The packaged Prometheus server is stopped and disabled: only the promtool
# binary is wanted.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-promtool: need root to install the prometheus package (for promtool)" >&2
  exit 1
fi
echo "install-promtool: installing prometheus (for promtool)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
systemctl disable --now prometheus >/dev/null 2>&1 || true
service prometheus stop >/dev/null 2>&1 || true
command -v promtool >/dev/null
