#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian machine, idempotently:
# a second run with everything present does nothing and takes milliseconds.
#   bird2 (Calico's BGP daemon), frr (an FRR router peer), iptables, iproute2,
#   conntrack, ipset, socat, curl, python3 (pod HTTP servers in the test bed),
#   ethtool (veth NAPI settings of hack/bench/healthcheck.sh),
#   containerd, runc and the CNI plugins (the real-cluster suite, test/cluster:
#   hack/cluster/cluster.sh), dpkg-deb (hack/image.sh), openssl (its PKI),
#   nftables (the nft CLI: the nftables backend's tests read and tamper with its
#   table through it; the agent itself writes by netlink and needs no nft binary).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have bird || need+=(bird2)
[[ -x /usr/lib/frr/bgpd ]] || need+=(frr)
have iptables-restore || need+=(iptables)
have ip || need+=(iproute2)
have conntrack || need+=(conntrack)
have ipset || need+=(ipset)
have socat || need+=(socat)
have curl || need+=(curl)
have python3 || need+=(python3)
have ethtool || need+=(ethtool)
have containerd || need+=(containerd)
have runc || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
have openssl || need+=(openssl)
have dpkg-deb || need+=(dpkg)
have nft || need+=(nftables)

if ((${#need[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: need root to install: ${need[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packaged daemons must not run on their own: tests start their own
# instances inside network namespaces.
for svc in bird frr containerd; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || true
  service "$svc" stop >/dev/null 2>&1 || true
done
