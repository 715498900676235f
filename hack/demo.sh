#!/usr/bin/env bash
# hack/demo.sh — the whole edge agent in a namespace test bed, one command.
#
#   hack/demo.sh up       (make demo)       build, start, show, leave running
#   hack/demo.sh down     (make demo-down)  remove everything; idempotent
#   hack/demo.sh show                       print the "what is going on" part again
#   hack/demo.sh pod stop|start N           stop / restart pod N's HTTP server
#
# "up" installs what it needs (hack/install-deps.sh), builds bin/edgeagent,
# builds the test bed (hack/testbed/topology.sh: an edge node, two Calico
# nodes running BIRD, a pod behind each, an FRR router, a client), and starts
# the agent in the edge namespace. When kube-apiserver and etcd are present
# (hack/get-apiserver.sh's cache; this script never builds them) and kubectl
# is on PATH, it runs in cluster mode: etcd + kube-apiserver inside the edge
# namespace on 127.0.0.1, the CRDs installed, a Service with an EndpointSlice
# naming the two pods, and the LBRoutes applied with kubectl. Otherwise it
# runs in standalone mode: the agent watches a directory of LBRoute YAML.
# Then it waits (polling, with timeouts) for the BGP sessions, the routes at
# every peer and the VIPs answering, and prints them.
#
# Ctrl-C during "up" tears everything down. Everything the demo starts is
# recorded by PID under DEMO_DIR and stopped by that PID; namespaces carry
# DEMO_PREFIX, so the demo never touches anything else on the machine.
#
# Environment:
#   DEMO_PREFIX        namespace prefix (default "demo-")
#   DEMO_DIR           state: configs, logs, PIDs, etcd data (default /run/edgeagent-demo)
#   DEMO_KEEP          1 = leave the demo running after "up" (default); 0 = tear down at the end
#   DEMO_MODE          auto (default), cluster or standalone
#   DEMO_KEEP_ON_FAIL  1 = leave a failed "up" in place for debugging (default 0: tear down)
#   EDGEAGENT_K8S_BIN  where kube-apiserver and etcd are (default /var/cache/edgeagent/k8s-bin)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P=${DEMO_PREFIX:-demo-}
DIR=${DEMO_DIR:-/run/edgeagent-demo}
KEEP=${DEMO_KEEP:-1}
MODE=${DEMO_MODE:-auto}
KEEP_ON_FAIL=${DEMO_KEEP_ON_FAIL:-0}
K8S_BIN=${EDGEAGENT_K8S_BIN:-/var/cache/edgeagent/k8s-bin}
BIN=$ROOT/bin/edgeagent

EDGE=${P}edge
CLIENT=${P}client
FRR=${P}frr1
EDGE_IP=10.99.0.1
FRR_IP=10.99.0.21
CALICO_IPS=(10.99.0.11 10.99.0.12)
POD_IPS=(10.244.1.10 10.244.2.10)
POD_PORT=8080
VIP_RANGE=10.200.0.0/16
WEB_VIP=10.200.0.10 # rr over both pods
API_VIP=10.200.0.20 # wrr 3:1 over both pods
ADMIN=127.0.0.1:9561
METRICS=127.0.0.1:9560
API_PORT=6443
CONFIG=$DIR/edgeagent.yaml
KUBECONFIG_FILE=$DIR/k8s/kubeconfig

T0=$SECONDS
if [[ -t 1 ]]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '\n%s==> %s%s  (%ss)\n' "$B" "$*" "$N" "$((SECONDS - T0))"; }
info() { printf '    %s\n' "$*"; }
# fds 8 and 9 keep the script's own stdout and stderr for the signal and exit
# handlers: a trap runs inside whatever redirection was active (a poll sends
# its check's output to /dev/null). Long-lived children get them closed, so a
# pipe such as "make demo | tee log" ends when the script does.
exec 8>&1 9>&2
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
# A poll's check sets FATAL (and fails) when waiting longer is pointless,
# e.g. the process it waits for has exited.
FATAL=
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }
testbed() {
  TESTBED_DIR=$DIR/testbed NS_PREFIX=$P CALICO_NODES=2 WITH_FRR=1 VIP_RANGE=$VIP_RANGE \
    POD_PORT=$POD_PORT "$ROOT/hack/testbed/topology.sh" "$@" 8>&- 9>&-
}
kctl() { in_ns "$EDGE" kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }
agentctl() { in_ns "$EDGE" "$BIN" "$@"; }
birdc_n() { local n=$1; shift; birdc -s "$DIR/testbed/calico$n/bird.ctl" "$@"; }
vtysh_frr() { in_ns "$FRR" vtysh --vty_socket "$DIR/testbed/frr1" "$@"; }

# wait_for SECONDS WHAT CMD... : poll CMD until it succeeds (20 times a
# second), or fail naming WHAT.
wait_for() {
  local t=$1 what=$2 start=$SECONDS; shift 2
  local deadline=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [[ -z $FATAL ]] || die "$FATAL"
    ((SECONDS < deadline)) || die "timed out after ${t}s waiting for $what"
    sleep 0.05
  done
  info "ok: $what ($((SECONDS - start))s)"
}

# alive PIDFILE: the recorded process exists, is no zombie, and has $DIR on
# its command line (a recycled PID is never ours).
alive() {
  [[ -s $1 ]] || return 1
  local pid st
  pid=$(<"$1")
  [[ -r /proc/$pid/stat ]] || return 1
  st=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n $st && $st != Z ]] || return 1
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$DIR"
}

# spawn NAME NS CMD... : run CMD in namespace NS in its own session (so a
# Ctrl-C in the terminal reaches this script, not the daemons), output to
# $DIR/NAME.log, PID to $DIR/NAME.pid (bash writes its PID, then execs CMD).
spawn() {
  local name=$1 ns=$2; shift 2
  rm -f "$DIR/$name.pid"
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
  ip netns exec "$ns" setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$DIR/$name.pid" "$@" \
    </dev/null >"$DIR/$name.log" 2>&1 8>&- 9>&- &
  wait_quiet 5 test -s "$DIR/$name.pid" || die "$name did not start; see $DIR/$name.log"
}
wait_quiet() { # like wait_for, silent, returns 1 on timeout
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# stop NAME [GRACE]: SIGTERM the recorded PID, SIGKILL after GRACE seconds.
stop() {
  local f=$DIR/$1.pid grace=${2:-10} pid
  if alive "$f"; then
    pid=$(<"$f")
    kill "$pid" 2>/dev/null || true
    wait_quiet "$grace" eval "! alive $f" || kill -9 "$pid" 2>/dev/null || true
    wait_quiet 5 eval "! alive $f" || true
  fi
  rm -f "$f"
}

# ---------------------------------------------------------------- cluster mode

k8s_usable() {
  [[ -x $K8S_BIN/kube-apiserver && -x $K8S_BIN/etcd ]] && command -v kubectl >/dev/null
}

k8s_credentials() {
  local d=$DIR/k8s
  mkdir -p "$d/certs"
  command -v openssl >/dev/null || {
    info "installing openssl"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  }
  (
    cd "$d"
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
      -subj /CN=edgeagent-demo-ca -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj /CN=kube-apiserver -keyout serving.key -out serving.csr 2>/dev/null
    printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'extendedKeyUsage=serverAuth' \
      'keyUsage=critical,digitalSignature' >serving.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile serving.ext -out serving.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    token=$(openssl rand -hex 16)
    echo "$token,admin,admin-uid,\"system:masters\"" >tokens.csv
    cat >kubeconfig <<EOF
apiVersion: v1
kind: Config
clusters:
- name: demo
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: $d/ca.crt}
users:
- name: admin
  user: {token: $token}
contexts:
- name: demo
  context: {cluster: demo, user: admin}
current-context: demo
EOF
  )
}

k8s_start() {
  local d=$DIR/k8s etcd_args=()
  k8s_credentials
  mkdir -p "$d/etcd-data"
  etcd_args=(--name demo --data-dir "$d/etcd-data"
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380
    --initial-cluster demo=http://127.0.0.1:2380 --log-level warn)
  # A throwaway demo needs no durability; fsync dominates etcd's latency.
  "$K8S_BIN/etcd" --help 2>&1 | grep -q -- --unsafe-no-fsync && etcd_args+=(--unsafe-no-fsync)
  spawn etcd "$EDGE" "$K8S_BIN/etcd" "${etcd_args[@]}"
  spawn kube-apiserver "$EDGE" "$K8S_BIN/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$d/serving.crt" --tls-private-key-file "$d/serving.key" --cert-dir "$d/certs" \
    --token-auth-file "$d/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range 10.96.0.0/24 --allow-privileged=true \
    --disable-admission-plugins ServiceAccount
  # (no controller-manager runs, so there is no token controller either)
  wait_for 90 "kube-apiserver ready (in $EDGE, https://127.0.0.1:$API_PORT)" k8s_ready
  kctl apply --server-side -f "$ROOT/deploy/daemonset/crds" >/dev/null
  kctl wait --for=condition=Established --timeout=60s -f "$ROOT/deploy/daemonset/crds" >/dev/null
  info "CRDs installed: $(kctl get crd -o name | tr '\n' ' ')"
}
k8s_ready() {
  alive "$DIR/kube-apiserver.pid" || { FATAL="kube-apiserver exited: $(tail -n 5 "$DIR/kube-apiserver.log")"; return 1; }
  alive "$DIR/etcd.pid" || { FATAL="etcd exited: $(tail -n 5 "$DIR/etcd.log")"; return 1; }
  kctl get --raw /readyz
}

# The demo's objects: a Service "web" without selector whose EndpointSlice
# names the two pods (no kubelet runs, so the slice is written by hand, as
# the EndpointSlice controller would), an LBRoute for it, and an LBRoute with
# static real servers.
k8s_objects() {
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: edgeagent-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80, protocol: TCP, targetPort: $POD_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-demo
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: $POD_PORT, protocol: TCP}]
endpoints:
- addresses: [${POD_IPS[0]}]
  conditions: {ready: true, serving: true}
  nodeName: calico1
- addresses: [${POD_IPS[1]}]
  conditions: {ready: true, serving: true}
  nodeName: calico2
---
EOF
  route_web service
  echo "---"
  route_api
}

# route_web service|static
route_web() {
  cat <<EOF
# Round robin over the pods; in cluster mode they are the ready endpoints of
# Service shop/web.
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec:
  vsName: shop-web
  vsIP: $WEB_VIP
  ports: [{port: 80, protocol: TCP, targetPort: $( [[ $1 == service ]] && echo http || echo "$POD_PORT")}]
  policy: rr
EOF
  if [[ $1 == service ]]; then
    echo "  service: {name: web}"
  else
    echo "  realServers: [{ip: ${POD_IPS[0]}}, {ip: ${POD_IPS[1]}}]"
  fi
  echo "  healthCheck: {type: HTTP, path: /, expectedStatus: \"200\", intervalSeconds: 1, timeoutSeconds: 1, riseCount: 1, fallCount: 2}"
}
route_api() {
  cat <<EOF
# Weighted round robin over static real servers (3:1), TCP health check.
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: api, namespace: shop}
spec:
  vsIP: $API_VIP
  ports: [{port: 80, protocol: TCP, targetPort: $POD_PORT}]
  policy: wrr
  realServers: [{ip: ${POD_IPS[0]}, weight: 3}, {ip: ${POD_IPS[1]}, weight: 1}]
  healthCheck: {type: TCP, intervalSeconds: 1, timeoutSeconds: 1, riseCount: 1, fallCount: 2}
EOF
}

# ------------------------------------------------------------------ the agent

write_config() {
  local source
  if [[ $MODE == cluster ]]; then
    source="source: {kubeconfig: $KUBECONFIG_FILE}
kubernetes: {namespace: edgeagent-system}"
  else
    source="source: {dir: routes}   # relative to this file"
  fi
  cat >"$CONFIG" <<EOF
# edgeagent config written by hack/demo.sh ($MODE mode)
nodeName: edge-1
$source
vipPools:
- cidr: $VIP_RANGE            # what the client routes via the edge
bgp:
  asn: 64512                  # Calico's AS: iBGP with the Calico nodes and FRR
  routerID: $EDGE_IP
  peers:
  - {address: ${CALICO_IPS[0]}}       # calico1 (BIRD)
  - {address: ${CALICO_IPS[1]}}       # calico2 (BIRD)
  - {address: $FRR_IP}       # frr1
  importCIDRs: [10.244.0.0/16]  # learn the pod blocks, nothing else
dataplane: {vipInterface: edge-vip0, masquerade: true}
adminAddress: "$ADMIN"
metricsAddress: "$METRICS"
EOF
}

start_agent() {
  spawn edgeagent "$EDGE" "$BIN" run --config "$CONFIG"
  wait_for 30 "agent answering on $ADMIN (in $EDGE)" agent_up
}
agent_up() {
  alive "$DIR/edgeagent.pid" || { FATAL="the agent exited: $(tail -n 20 "$DIR/edgeagent.log")"; return 1; }
  agentctl status --admin-address "$ADMIN" -o json
}

status_json() { agentctl status --admin-address "$ADMIN" -o json; }

neighbors_established() {
  agent_up >/dev/null || return 1
  status_json | python3 -c '
import json, sys
r = json.load(sys.stdin)
est = [n for n in r.get("neighbors") or [] if n.get("state") == "established"]
sys.exit(0 if len(est) == int(sys.argv[1]) else 1)' 3
}
bird_has() { # bird_has N PREFIX : calico N learned PREFIX with next hop = the edge
  birdc_n "$1" show route "$2" | grep -q "via $EDGE_IP"
}
frr_has() {
  local out
  out=$(vtysh_frr -c "show ip bgp $1") || return 1
  grep -q "$EDGE_IP" <<<"$out" && ! grep -q "not in table" <<<"$out"
}
edge_has_blocks() {
  local out
  out=$(ip -n "$EDGE" route show proto 237)
  grep -q "10.244.1.0/24 via ${CALICO_IPS[0]}" <<<"$out" && grep -q "10.244.2.0/24 via ${CALICO_IPS[1]}" <<<"$out"
}
reals_healthy() { # every real of both virtual services probed healthy
  status_json | python3 -c '
import json, sys
r = json.load(sys.stdin)
reals = [x for v in r.get("virtualServices") or [] for x in v.get("reals") or []]
sys.exit(0 if len(reals) == 4 and all(x.get("healthy") for x in reals) else 1)'
}
curl_ok() { in_ns "$CLIENT" curl -fsS --max-time 2 "http://$1/" >/dev/null; }
lbr_ready() {
  [[ $(kctl get lbr -n shop -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}') == "True True " ]]
}

# ------------------------------------------------------------------ up / show

do_up() {
  [[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, iptables, BGP on port 179)"
  if [[ -e $DIR || -e /run/netns/${P}edge ]]; then
    echo "demo: a previous demo is still there; removing it first"
    do_down
  fi
  trap on_signal INT TERM
  trap on_exit EXIT
  mkdir -p "$DIR/routes"
  chmod 0755 "$DIR"

  say "installing dependencies (hack/install-deps.sh) and building the agent (make build)"
  "$ROOT/hack/install-deps.sh"
  command -v go >/dev/null || die "go is not on PATH (the agent is built from source; Go 1.26)"
  make -s -C "$ROOT" build
  info "$("$BIN" version 2>/dev/null | head -n1)"

  case $MODE in
    auto) if k8s_usable; then MODE=cluster; else MODE=standalone; fi ;;
    cluster) k8s_usable || die "DEMO_MODE=cluster: need kube-apiserver and etcd in $K8S_BIN (hack/get-apiserver.sh) and kubectl on PATH" ;;
    standalone) ;;
    *) die "DEMO_MODE must be auto, cluster or standalone" ;;
  esac
  echo "$MODE" >"$DIR/mode"

  say "building the test bed (hack/testbed/topology.sh, namespaces ${P}*)"
  testbed up 2>&1 | sed 's/^/    /'

  if [[ $MODE == cluster ]]; then
    say "cluster mode: etcd + kube-apiserver in $EDGE (binaries from $K8S_BIN)"
    k8s_start
  else
    say "standalone mode: LBRoutes from $DIR/routes"
    if k8s_usable; then
      info "(DEMO_MODE=standalone)"
    else
      info "(no kube-apiserver/etcd in $K8S_BIN, or no kubectl: hack/get-apiserver.sh builds them once, ~6 min)"
    fi
    route_web static >"$DIR/routes/web.yaml"
    route_api >"$DIR/routes/api.yaml"
  fi

  say "starting the agent in $EDGE (config $CONFIG, log $DIR/edgeagent.log)"
  write_config
  start_agent
  info "PID $(<"$DIR/edgeagent.pid")"

  if [[ $MODE == cluster ]]; then
    say "applying the demo objects with kubectl (namespaces, Service + EndpointSlice, 2 LBRoutes)"
    k8s_objects >"$DIR/k8s/demo-objects.yaml"
    kctl apply -f "$DIR/k8s/demo-objects.yaml" | sed 's/^/    /'
  fi

  say "waiting for the agent's work"
  wait_for 60 "3 BGP neighbors established (calico1, calico2, frr1)" neighbors_established
  local vips="$WEB_VIP/32 and $API_VIP/32"
  wait_for 30 "calico1 learned $vips via the edge" eval "bird_has 1 $WEB_VIP/32 && bird_has 1 $API_VIP/32"
  wait_for 30 "calico2 learned $vips via the edge" eval "bird_has 2 $WEB_VIP/32 && bird_has 2 $API_VIP/32"
  wait_for 30 "frr1 learned $vips via the edge" eval "frr_has $WEB_VIP/32 && frr_has $API_VIP/32"
  wait_for 30 "the edge learned both pod blocks (kernel, proto 237)" edge_has_blocks
  wait_for 30 "health checks: all 4 reals up" reals_healthy
  wait_for 30 "the client reaches $WEB_VIP and $API_VIP" eval "curl_ok $WEB_VIP && curl_ok $API_VIP"
  if [[ $MODE == cluster ]]; then
    wait_for 60 "kubectl get lbr: both LBRoutes READY=True (written by the agent)" lbr_ready
  fi

  do_show
  trap - INT TERM EXIT
  if [[ $KEEP == 0 ]]; then
    say "DEMO_KEEP=0: tearing down"
    do_down
    say "done"
    return
  fi
  hints
  say "demo up in $((SECONDS - T0))s"
}

do_show() {
  local n mode
  mode=$(cat "$DIR/mode" 2>/dev/null) || die "no demo running (make demo)"
  say "edgeagent status  (ip netns exec $EDGE bin/edgeagent status)"
  agentctl status --admin-address "$ADMIN" | sed 's/^/    /'
  info "(frr1: received 1, accepted 0: its 10.250.0.0/24 lies outside importCIDRs 10.244.0.0/16)"

  say "what each peer learned from the edge ($EDGE_IP)"
  for n in 1 2; do
    info "--- calico$n: birdc show route protocol Global_${EDGE_IP//./_}"
    birdc_n "$n" show route protocol "Global_${EDGE_IP//./_}" | sed 's/^/    /'
  done
  info "--- frr1: vtysh -c 'show ip bgp'"
  vtysh_frr -c "show ip bgp" | sed 's/^/    /'
  info "--- edge kernel: pod blocks the agent learned (ip route show proto 237)"
  in_ns "$EDGE" ip route show proto 237 | sed 's/^/    /'

  if [[ $mode == cluster ]]; then
    say "kubectl get lbr -A  (ip netns exec $EDGE kubectl --kubeconfig $KUBECONFIG_FILE ...)"
    kctl get lbr -A | sed 's/^/    /'
    info ""
    kctl get edgenodestatuses 2>/dev/null | sed 's/^/    /' || true
  fi

  say "20 requests from the client ($CLIENT) to each VIP, counted per pod"
  for vip in "$WEB_VIP" "$API_VIP"; do
    info "--- http://$vip/  ($( [[ $vip == "$WEB_VIP" ]] && echo "web, rr" || echo "api, wrr 3:1"))"
    for _ in $(seq 20); do
      in_ns "$CLIENT" curl -s --max-time 2 "http://$vip/" || echo "FAILED"
    done | sort | uniq -c | sed 's/^/    /'
  done
}

hints() {
  local mode kc=""
  mode=$(cat "$DIR/mode")
  say "the demo keeps running; try"
  cat <<EOF
    ip netns exec $EDGE $BIN status
    ip netns exec $EDGE $BIN status -o json
    ip netns exec $EDGE curl -s http://$METRICS/metrics | grep ^edgeagent_
    ip netns exec $CLIENT curl -s http://$WEB_VIP/
    birdc -s $DIR/testbed/calico1/bird.ctl show route
    ip netns exec $FRR vtysh --vty_socket $DIR/testbed/frr1 -c 'show ip bgp'
    ip netns exec $EDGE iptables-save -t nat | grep EDGE-
    tail -f $DIR/edgeagent.log
EOF
  if [[ $mode == cluster ]]; then
    kc="ip netns exec $EDGE kubectl --kubeconfig $KUBECONFIG_FILE"
    cat <<EOF
    $kc get lbr -A
    $kc -n shop describe lbr web
    $kc get edgenodestatuses
    # take pod2 out of Service web (the agent drops that real):
    $kc -n shop patch endpointslice web-demo --type=json -p '[{"op":"remove","path":"/endpoints/1"}]'
    # a VIP outside the pool: refused with field and reason, READY=False, the rest carries on:
    printf 'apiVersion: apv.arraynetworks.com/v1alpha1\nkind: LBRoute\nmetadata: {name: bad, namespace: shop}\nspec:\n  vsIP: 192.0.2.1\n  ports: [{port: 80}]\n  realServers: [{ip: ${POD_IPS[0]}}]\n' | $kc apply -f -
EOF
  else
    cat <<EOF
    \$EDITOR $DIR/routes/web.yaml     (the agent watches $DIR/routes)
EOF
  fi
  cat <<EOF
    hack/demo.sh pod stop 2 (pod2's server stops: its real goes DOWN, requests go to pod1)
    hack/demo.sh pod start 2
    hack/demo.sh show       (print all of the above again)
    make demo-down          (remove everything)
EOF
}

on_signal() {
  trap - INT TERM EXIT
  exec 1>&8 2>&9
  echo
  echo "demo: interrupted; tearing down" >&2
  do_down
  exit 130
}
on_exit() {
  local rc=$?
  trap - INT TERM EXIT
  exec 1>&8 2>&9
  ((rc == 0)) && return
  echo "demo: failed (exit $rc)" >&2
  local f
  for f in "$DIR/edgeagent.log" "$DIR/kube-apiserver.log" "$DIR/etcd.log"; do
    [[ -s $f ]] || continue
    echo "--- tail of $f" >&2
    tail -n 15 "$f" >&2
  done
  if [[ $KEEP_ON_FAIL == 1 ]]; then
    echo "demo: DEMO_KEEP_ON_FAIL=1: left in place; make demo-down removes it" >&2
  else
    do_down
  fi
  exit "$rc"
}

# ----------------------------------------------------------------------- down

do_down() {
  echo "demo: tearing down (namespaces ${P}*, $DIR)"
  # The agent first: SIGTERM keeps its VIPs and rules for a successor
  # (graceful restart), so "edgeagent cleanup" then removes them.
  stop edgeagent 15
  stop kube-apiserver 10
  stop etcd 10
  if [[ -e /run/netns/$EDGE && -x $BIN ]]; then
    local cfg=(--vip-interface edge-vip0)
    [[ -s $CONFIG ]] && cfg=(--config "$CONFIG")
    local out
    out=$(in_ns "$EDGE" "$BIN" cleanup "${cfg[@]}" 2>&1) ||
      printf 'demo: edgeagent cleanup failed (the namespace is deleted anyway):\n%s\n' "$out" >&2
  fi
  testbed down 2>&1 | sed 's/^/    /'
  rm -rf "$DIR"
  echo "demo: down"
}

# do_pod stop|start N: stop or restart pod N's HTTP server, to watch the
# health checks take the real out and put it back.
do_pod() {
  local n=${2:-}
  [[ -e $DIR/mode ]] || die "no demo running (make demo)"
  [[ $n == 1 || $n == 2 ]] || die "usage: $0 pod stop|start 1|2"
  case ${1:-} in
    stop)
      local f=$DIR/testbed/pod$n/http.pid
      alive "$f" && kill "$(<"$f")"
      wait_quiet 5 eval "! alive $f" || die "pod$n's server did not stop"
      echo "demo: pod$n's HTTP server stopped"
      wait_for 30 "the agent's health checks marked ${POD_IPS[n-1]} down" eval "! reals_healthy"
      agentctl status --admin-address "$ADMIN" | sed -n '/^Virtual services/,/^$/p' | sed 's/^/    /'
      ;;
    start)
      testbed up >/dev/null 2>&1 # idempotent: restarts what is missing
      echo "demo: pod$n's HTTP server running again"
      wait_for 30 "the agent's health checks: all reals up" reals_healthy
      ;;
    *) die "usage: $0 pod stop|start 1|2" ;;
  esac
}

case ${1:-} in
  up) do_up ;;
  down) do_down ;;
  show) do_show; hints ;;
  pod) shift; do_pod "$@" ;;
  *) echo "usage: $0 up|down|show|pod stop|start N" >&2; exit 2 ;;
esac
