#!/usr/bin/env bash
# hack/testbed/topology.sh — a BGP test bed for edgeagent in network namespaces.
#
#   topology.sh up | down | status | env
#
# What "up" builds (every link lives inside namespaces it creates; nothing
# touches the root namespace and no namespace has a default route out):
#
#   <p>fabric   bridge br0, the shared L2 segment 10.99.0.0/24
#   <p>edge     10.99.0.1 on eth0 (fabric), 10.99.1.1 on eth1 (client side).
#               The agent runs here (ip netns exec <p>edge edgeagent run ...).
#   <p>client   10.99.1.2, routes VIP_RANGE via 10.99.1.1
#   <p>calicoN  10.99.0.(10+N): BIRD 2 configured the way Calico's confd
#               renders bird.cfg (iBGP mesh between the nodes, a global
#               BGPPeer = the edge, graceful restart, the node's IPAM block
#               10.244.N.0/24 exported with LOCAL_PREF 2147482623 and next hop
#               = the node)
#   <p>podN     10.244.N.10 behind calicoN (a cali* veth as Felix plumbs it),
#               HTTP on POD_PORT answering "podN"
#   <p>frr1     10.99.0.21: FRR (zebra + bgpd), iBGP, announces FRR_NETWORKS,
#               optional TCP MD5 password (FRR_PASSWORD)
#
# Parameters (environment):
#   TESTBED_DIR     configs, logs, sockets, pid files (default /tmp/edgeagent-testbed)
#   NS_PREFIX       namespace name prefix, so several beds run at once (default "eat-")
#   CALICO_NODES    1-3 (default 1)
#   WITH_FRR        1/0 (default 1)
#   FRR_PASSWORD    TCP MD5 password FRR uses towards the edge (default none)
#   FRR_NETWORKS    prefixes FRR announces (default "10.250.0.0/24")
#   FRR_NETWORKS6   with WITH_IPV6=1: IPv6 prefixes FRR announces over an IPv6
#                   session with the edge (default "fd00:250::/64")
#   WITH_IPV6       1 = also give the fabric IPv6 (edge fd99::1, frr1 fd99::21)
#                   and an IPv6 session between FRR and the edge (default 0)
#   FRR_ASN         FRR's own AS (default ASN: iBGP; another value makes it eBGP)
#   ASN             everybody's AS (default 64512)
#   VIP_RANGE       what the client routes via the edge (default 10.200.0.0/16)
#   POD_PORT        pod HTTP port (default 8080)
#   BIRD_GR_TIME    BIRD's graceful restart time in seconds (default: BIRD's 120)
#   SHARED_PREFIX   a prefix inside the pod CIDR that every calico node
#                   announces too (same attributes), for ECMP tests (default none)
# "env" prints the addressing as KEY=VALUE lines for tests.
# "down" stops our daemons by PID, kills whatever else still runs in our
# namespaces (e.g. an agent a test left behind), then deletes them by name.
set -euo pipefail

DIR=${TESTBED_DIR:-/tmp/edgeagent-testbed}
P=${NS_PREFIX:-eat-}
NODES=${CALICO_NODES:-1}
WITH_FRR=${WITH_FRR:-1}
FRR_PASSWORD=${FRR_PASSWORD:-}
FRR_NETWORKS=${FRR_NETWORKS:-10.250.0.0/24}
FRR_ASN=${FRR_ASN:-}
WITH_IPV6=${WITH_IPV6:-0}
FRR_NETWORKS6=${FRR_NETWORKS6:-fd00:250::/64}
EDGE_IP6=fd99::1
FRR_IP6=fd99::21
ASN=${ASN:-64512}
VIP_RANGE=${VIP_RANGE:-10.200.0.0/16}
POD_PORT=${POD_PORT:-8080}
SHARED_PREFIX=${SHARED_PREFIX:-}
BIRD_GR_TIME=${BIRD_GR_TIME:-}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)

EDGE_IP=10.99.0.1
EDGE_CLIENT_IP=10.99.1.1
CLIENT_IP=10.99.1.2
FRR_IP=10.99.0.21
POD_CIDR=10.244.0.0/16

case $NODES in 1|2|3) ;; *) echo "CALICO_NODES must be 1, 2 or 3" >&2; exit 2 ;; esac

say() { echo "testbed[$P]: $*" >&2; }
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }
node_ip() { echo "10.99.0.$((10 + $1))"; }
has_ns() { [[ -e /run/netns/$1 ]]; }
namespaces() {
  echo "${P}fabric ${P}edge ${P}client ${P}frr1"
  local i; for i in 1 2 3; do echo "${P}calico$i ${P}pod$i"; done
}

# alive PIDFILE: the recorded process exists, is not a zombie, and still has
# our directory on its command line (so a recycled PID is never ours).
alive() {
  [[ -s $1 ]] || return 1
  local pid st
  pid=$(<"$1")
  [[ -r /proc/$pid/stat ]] || return 1
  st=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n $st && $st != Z ]] || return 1
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$DIR"
}

poll() { # poll SECONDS CMD... : until CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

mkns() {
  has_ns "$1" || ip netns add "$1"
  ip -n "$1" link set lo up
  in_ns "$1" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

veth() { # veth NS1 DEV1 NS2 DEV2
  if ip -n "$1" link show "$2" >/dev/null 2>&1 && ip -n "$3" link show "$4" >/dev/null 2>&1; then return; fi
  ip -n "$1" link del "$2" 2>/dev/null || true
  ip -n "$3" link del "$4" 2>/dev/null || true
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
}

plug() { # plug NS ADDR/LEN : eth0 of NS onto the fabric bridge
  local port="v-${1#"$P"}"
  port=${port:0:15}
  veth "${P}fabric" "$port" "$1" eth0
  ip -n "${P}fabric" link set "$port" master br0 up
  ip -n "$1" addr replace "$2" dev eth0
  ip -n "$1" link set eth0 up
}

bird_conf() { # bird_conf N : Calico-style bird.cfg for node N on stdout
  local n=$1 me block j peer
  me=$(node_ip "$n"); block="10.244.$n.0/24"
  # Per-peer filters as confd writes them; BIRD 2 wants them inside the
  # ipv4 channel. Imported routes with a local-pref above Calico's own get a
  # higher preference; exported routes carry local-pref = 2^31-1 - metric,
  # so a block (metric 1024) leaves with 2147482623.
  local filters="    import filter {
      if (defined(bgp_local_pref) && (bgp_local_pref > 2147482623)) then preference = 200;
      accept;
    };
    export filter {
      if (defined(source) && source = RTS_BGP && defined(bgp_local_pref)) then {
        krt_metric = 2147483647 - bgp_local_pref;
      } else {
        if (!defined(krt_metric)) then { krt_metric = 1024; }
        bgp_local_pref = 2147483647 - krt_metric;
      }
      calico_export_to_bgp_peers(true);
      reject;
    };"
  cat <<CONF
# calico$n ($me): BIRD 2 rendering of Calico's confd templates (BGP mode, no
# encapsulation, node-to-node mesh, one global BGPPeer: the edge agent).
log "$DIR/calico$n/bird.log" all;
router id $me;

# bird_aggr.cfg: the block affine to this node, held as a blackhole
protocol static {
  ipv4;
  route $block blackhole;
$( [[ -n $SHARED_PREFIX ]] && echo "  route $SHARED_PREFIX blackhole;  # test bed only: every node announces it (ECMP)")
}
function calico_aggr() {
  if (net = $block) then accept;
  if (net ~ $block && krt_metric < 1024) then accept;
  if (net ~ $block) then reject;
}

# bird_ipam.cfg
function apply_communities() { }
function calico_export_to_bgp_peers(bool internal_peer) {
  if (internal_peer && defined(ifname)) then {
    if ((ifname ~ "*.cali") || (ifname ~ "tunl0")) then reject;
  }
  apply_communities();
  calico_aggr();
  if (net ~ $POD_CIDR) then accept;
}
filter calico_kernel_programming {
  if (source = RTS_DEVICE) then reject;   # BIRD 2 would copy connected routes
  if (defined(source) && source = RTS_BGP && !defined(krt_metric)) then {
    krt_metric = 1024;
    if (defined(bgp_local_pref)) then krt_metric = 2147483647 - bgp_local_pref;
  }
  accept;
}

# bird.cfg
protocol kernel {
  ipv4 { import all; export filter calico_kernel_programming; };
  metric 0;          # honour krt_metric as Calico's BIRD 1.6 fork does
  learn;
  persist;
  scan time 2;
  graceful restart;
  merge paths on;
}
protocol device { scan time 2; }
protocol direct { ipv4; interface -"cali*", "*"; }

template bgp bgp_template {
  description "Connection to BGP peer";
  local as $ASN;
  ipv4 { gateway recursive; add paths on; };
  graceful restart;
$( [[ -n $BIRD_GR_TIME ]] && echo "  graceful restart time $BIRD_GR_TIME;  # test bed only")
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}
CONF
  for ((j = 1; j <= NODES; j++)); do
    ((j == n)) && continue
    peer=$(node_ip "$j")
    echo "protocol bgp Mesh_${peer//./_} from bgp_template {"
    echo "  neighbor $peer as $ASN;"
    echo "  source address $me;"
    echo "  multihop;"
    echo "  ipv4 {"; echo "$filters"; echo "  };"
    ((j > n)) && echo "  passive on;"
    echo "}"
  done
  cat <<CONF
protocol bgp Global_${EDGE_IP//./_} from bgp_template {
  neighbor $EDGE_IP as $ASN;
  source address $me;
  multihop;
  ipv4 {
$filters
  };
}
CONF
}

up_calico() { # up_calico N
  local n=$1 ns="${P}calico$1" pns="${P}pod$1" d="$DIR/calico$1" me pod
  me=$(node_ip "$n"); pod="10.244.$n.10"
  mkdir -p "$d" "$DIR/pod$n/www"
  mkns "$ns"; mkns "$pns"
  plug "$ns" "$me/24"
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
  # Felix-style workload plumbing: the host end has MAC ee:ee:ee:ee:ee:ee and
  # proxy ARP; the pod's gateway 169.254.1.1 resolves to it; the node routes
  # the pod /32 to the cali interface with metric 1024 (stays inside the
  # block aggregate).
  veth "$ns" "cali$n" "$pns" eth0
  ip -n "$ns" link set "cali$n" address ee:ee:ee:ee:ee:ee
  in_ns "$ns" sysctl -qw "net.ipv4.conf.cali$n.proxy_arp=1" "net.ipv4.neigh.cali$n.proxy_delay=0"
  ip -n "$ns" link set "cali$n" up
  ip -n "$ns" route replace "$pod/32" dev "cali$n" scope link metric 1024
  ip -n "$pns" addr replace "$pod/32" dev eth0
  ip -n "$pns" link set eth0 up
  ip -n "$pns" route replace 169.254.1.1 dev eth0 scope link
  ip -n "$pns" route replace default via 169.254.1.1 dev eth0
  ip -n "$pns" neigh replace 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent

  bird_conf "$n" >"$d/bird.conf"
  bird -p -c "$d/bird.conf"
  if alive "$d/bird.pid"; then
    birdc -s "$d/bird.ctl" configure >/dev/null
  else
    rm -f "$d/bird.ctl"
    in_ns "$ns" bird -c "$d/bird.conf" -s "$d/bird.ctl" -P "$d/bird.pid"
    poll 10 birdc -s "$d/bird.ctl" show status || { say "BIRD on calico$n did not start"; exit 1; }
  fi

  # Written atomically: "up" also restarts stopped daemons while clients
  # are being served, and a truncated page would read as a failed request.
  echo "pod$n" >"$DIR/pod$n/www/.index.html.tmp"
  mv -f "$DIR/pod$n/www/.index.html.tmp" "$DIR/pod$n/www/index.html"
  if ! alive "$DIR/pod$n/http.pid"; then
    # bash records its PID and execs the server, so the file holds the
    # server's own PID
    in_ns "$pns" setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$DIR/pod$n/http.pid" \
      "$PY" -m http.server "$POD_PORT" --bind "$pod" --directory "$DIR/pod$n/www" \
      </dev/null >"$DIR/pod$n/http.log" 2>&1 &
    poll 10 in_ns "$pns" bash -c "exec 3<>/dev/tcp/$pod/$POD_PORT" || { say "pod$n HTTP server did not start"; exit 1; }
  fi
}

up_frr() {
  local d="$DIR/frr1" ns="${P}frr1" net
  mkdir -p "$d"
  chown frr:frr "$d"
  chmod 0755 "$d"
  chmod o+x "$DIR"
  mkns "$ns"
  plug "$ns" "$FRR_IP/24"
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
  [[ $WITH_IPV6 == 1 ]] && ip -n "$ns" addr replace "$FRR_IP6/64" dev eth0 nodad
  echo "hostname frr1" >"$d/zebra.conf"
  {
    echo "frr defaults traditional"
    echo "hostname frr1"
    echo "router bgp ${FRR_ASN:-$ASN}"
    echo " bgp router-id $FRR_IP"
    echo " no bgp network import-check"
    echo " neighbor $EDGE_IP remote-as $ASN"
    echo " neighbor $EDGE_IP timers connect 2"
    # eBGP needs an explicit policy in FRR (RFC 8212); this bed accepts all
    [[ -n $FRR_ASN && $FRR_ASN != "$ASN" ]] && echo " no bgp ebgp-requires-policy"
    [[ -n $FRR_PASSWORD ]] && echo " neighbor $EDGE_IP password $FRR_PASSWORD"
    if [[ $WITH_IPV6 == 1 ]]; then
      echo " neighbor $EDGE_IP6 remote-as $ASN"
      echo " neighbor $EDGE_IP6 timers connect 2"
    fi
    echo " address-family ipv4 unicast"
    for net in $FRR_NETWORKS; do echo "  network $net"; done
    [[ $WITH_IPV6 == 1 ]] && echo "  no neighbor $EDGE_IP6 activate"
    echo " exit-address-family"
    if [[ $WITH_IPV6 == 1 ]]; then
      echo " address-family ipv6 unicast"
      echo "  neighbor $EDGE_IP6 activate"
      for net in $FRR_NETWORKS6; do echo "  network $net"; done
      echo " exit-address-family"
    fi
  } >"$d/bgpd.conf"
  chown frr:frr "$d"/*.conf
  # FRR runs as the packaged frr user; every socket and pid file lives in
  # $d (--vty_socket, -z, -i), so several beds never share one; -P 0 turns
  # the TCP vty off.
  if ! alive "$d/zebra.pid"; then
    rm -f "$d/zserv.api" "$d/zebra.vty"
    in_ns "$ns" /usr/lib/frr/zebra -d -P 0 -f "$d/zebra.conf" -i "$d/zebra.pid" -z "$d/zserv.api" \
      --vty_socket "$d" --log "file:$d/zebra.log" 2>>"$d/stderr.log"
    poll 10 test -S "$d/zserv.api" || { say "zebra did not start"; exit 1; }
  fi
  if ! alive "$d/bgpd.pid"; then
    rm -f "$d/bgpd.vty"
    in_ns "$ns" /usr/lib/frr/bgpd -d -P 0 -f "$d/bgpd.conf" -i "$d/bgpd.pid" -z "$d/zserv.api" \
      --vty_socket "$d" --log "file:$d/bgpd.log" 2>>"$d/stderr.log"
    poll 10 test -S "$d/bgpd.vty" || { say "bgpd did not start"; exit 1; }
  fi
}

do_up() {
  local n
  mkdir -p "$DIR"
  mkns "${P}fabric"
  ip -n "${P}fabric" link show br0 >/dev/null 2>&1 || ip -n "${P}fabric" link add br0 type bridge stp_state 0
  ip -n "${P}fabric" link set br0 up
  mkns "${P}edge"
  plug "${P}edge" "$EDGE_IP/24"
  # nodad: the address is usable at once (no duplicate address detection)
  [[ $WITH_IPV6 == 1 ]] && ip -n "${P}edge" addr replace "$EDGE_IP6/64" dev eth0 nodad
  in_ns "${P}edge" sysctl -qw net.ipv4.ip_forward=1
  mkns "${P}client"
  veth "${P}edge" eth1 "${P}client" eth0
  ip -n "${P}edge" addr replace "$EDGE_CLIENT_IP/24" dev eth1
  ip -n "${P}edge" link set eth1 up
  ip -n "${P}client" addr replace "$CLIENT_IP/24" dev eth0
  ip -n "${P}client" link set eth0 up
  ip -n "${P}client" route replace "$VIP_RANGE" via "$EDGE_CLIENT_IP"
  for ((n = 1; n <= NODES; n++)); do up_calico "$n"; done
  [[ $WITH_FRR == 1 ]] && up_frr
  do_env >"$DIR/env"
  say "up ($DIR)"
}

stop_pidfile() { # TERM, wait up to 5 s, then KILL; by recorded PID only
  local f=$1 pid i
  if alive "$f"; then
    pid=$(<"$f")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$f" || break; sleep 0.05; done
    alive "$f" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

do_down() {
  local f ns pid i live
  for f in "$DIR"/pod*/http.pid "$DIR"/calico*/bird.pid "$DIR"/frr1/bgpd.pid "$DIR"/frr1/zebra.pid; do
    [[ -e $f ]] && stop_pidfile "$f"
  done
  for ns in $(namespaces); do
    has_ns "$ns" || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  for ns in $(namespaces); do
    has_ns "$ns" || continue
    for ((i = 0; i < 40; i++)); do
      live=0
      for pid in $(ip netns pids "$ns" 2>/dev/null); do
        [[ $(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) == Z ]] || live=1
      done
      ((live)) || break
      sleep 0.05
    done
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns"
  done
  rm -f "$DIR"/calico*/bird.ctl "$DIR"/frr1/*.vty "$DIR"/frr1/zserv.api
  say "down"
}

do_env() {
  local n
  echo "TESTBED_DIR=$DIR"
  echo "NS_PREFIX=$P"
  echo "ASN=$ASN"
  echo "NS_EDGE=${P}edge"
  echo "NS_CLIENT=${P}client"
  echo "NS_FABRIC=${P}fabric"
  echo "EDGE_IP=$EDGE_IP"
  echo "EDGE_CLIENT_IP=$EDGE_CLIENT_IP"
  echo "CLIENT_IP=$CLIENT_IP"
  echo "VIP_RANGE=$VIP_RANGE"
  echo "POD_CIDR=$POD_CIDR"
  echo "POD_PORT=$POD_PORT"
  echo "SHARED_PREFIX=$SHARED_PREFIX"
  echo "CALICO_NODES=$NODES"
  for ((n = 1; n <= NODES; n++)); do
    echo "NS_CALICO$n=${P}calico$n"
    echo "NS_POD$n=${P}pod$n"
    echo "CALICO${n}_IP=$(node_ip "$n")"
    echo "CALICO${n}_BLOCK=10.244.$n.0/24"
    echo "POD${n}_IP=10.244.$n.10"
    echo "BIRD${n}_CTL=$DIR/calico$n/bird.ctl"
  done
  if [[ $WITH_FRR == 1 ]]; then
    echo "NS_FRR=${P}frr1"
    echo "FRR_IP=$FRR_IP"
    echo "FRR_VTY_DIR=$DIR/frr1"
    echo "FRR_NETWORKS=$FRR_NETWORKS"
    echo "FRR_ASN=${FRR_ASN:-$ASN}"
    if [[ $WITH_IPV6 == 1 ]]; then
      echo "EDGE_IP6=$EDGE_IP6"
      echo "FRR_IP6=$FRR_IP6"
      echo "FRR_NETWORKS6=$FRR_NETWORKS6"
    fi
  fi
}

do_status() {
  local n
  ip netns list | grep -F -- "$P" || true
  for ((n = 1; n <= NODES; n++)); do
    echo "--- calico$n (BIRD)"
    birdc -s "$DIR/calico$n/bird.ctl" show protocols 2>&1 || true
  done
  if [[ $WITH_FRR == 1 ]]; then
    echo "--- frr1"
    in_ns "${P}frr1" vtysh --vty_socket "$DIR/frr1" -c "show bgp summary" 2>&1 || true
  fi
}

case ${1:-} in
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
  env) do_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
