#!/usr/bin/env bash
# hack/cluster/cluster.sh up | down | kubectl ARGS... | env
#
# A real single-node Kubernetes cluster whose node is an existing network
# namespace — the test bed's edge namespace (hack/testbed/topology.sh), so
# a hostNetwork pod lives in the edge node's network next to BIRD, FRR, the
# pods and the client. No Docker, no registry: Debian's containerd 1.6 and
# runc, and etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet and kubectl built from the Go module proxy (hack/get-apiserver.sh,
# hack/get-k8s-node.sh). Images come from docker-archive tarballs imported
# with `ctr images import`; pods must not pull.
#
# Environment:
#   CLUSTER_DIR     state: PKI, etcd, containerd, kubelet, logs (required;
#                   `down` removes everything in it but logs/)
#   CLUSTER_NETNS   the node's network namespace (required, must exist)
#   NODE_IP         the node's address in it (required; not loopback: kubelet
#                   refuses that), also the apiserver's
#   NODE_NAME       default edge-1
#   NODE_LABELS     kubelet --node-labels (default none)
#   NODE_TAINTS     kubelet --register-with-taints (default none)
#   CLUSTER_IMAGES  docker-archive tarballs to import at start
#   PAUSE_IMAGE     the sandbox image's reference (default edgeagent.local/pause:1;
#                   its tarball must be in CLUSTER_IMAGES)
#   K8S_BIN         the binaries (default /var/cache/edgeagent/k8s-bin)
#
# Isolation. Every component runs under `nsenter --net=NETNS --mount=MNTNS`:
# one mount namespace of our own (kubelet and containerd must see each
# other's mounts; `ip netns exec` would give each its own, with a fresh /sys
# and no cgroups). Inside it, tmpfs hides /run, /var/lib and /var/log, where
# kubelet and containerd 1.6 write to paths no flag moves
# (/var/lib/kubelet/device-plugins, /var/log/containers, /run/containerd/s,
# the hostPath /run/xtables.lock): those writes vanish with the mount
# namespace. What stays global, and is undone by `down`: the kubepods cgroups
# and three sysctls kubelet sets (vm.overcommit_memory, kernel.panic,
# kernel.panic_on_oops). Because those two are machine-wide, one cluster
# runs at a time: `up` waits for a lock (/var/cache/edgeagent/cluster.lock)
# that `down` releases.
#
# Pitfalls of this kind of machine (measured, see docs/install.md and
# docs/benchmarks.md): root lacks CAP_SYS_RESOURCE, so containerd must clamp
# oom_score_adj and kubelet must not set one; cgroup v1 needs
# failCgroupV1: false; a node without a CNI config stays NotReady (the
# bridge conflist below is never used: the pods are hostNetwork).
set -euo pipefail

: "${CLUSTER_DIR:?CLUSTER_DIR must be set}"
: "${CLUSTER_NETNS:?CLUSTER_NETNS must be set}"
NODE_NAME=${NODE_NAME:-edge-1}
K8S_BIN=${K8S_BIN:-${EDGEAGENT_K8S_BIN:-/var/cache/edgeagent/k8s-bin}}
PAUSE_IMAGE=${PAUSE_IMAGE:-edgeagent.local/pause:1}
LOCK=/var/cache/edgeagent/cluster.lock
mkdir -p "$CLUSTER_DIR"
D=$(cd "$CLUSTER_DIR" && pwd)
RUN=$D/run
MNTNS=$RUN/mntns
PKI=$D/pki
LOG=$D/logs
SOCK=$RUN/containerd/containerd.sock
export PATH=$K8S_BIN:$PATH

T0=$(date +%s%N)
say() { local n; n=$((($(date +%s%N) - T0) / 1000000)); printf 'cluster[%s %d.%03ds]: %s\n' "$NODE_NAME" $((n / 1000)) $((n % 1000)) "$*" >&2; }
inside() { nsenter --mount="$MNTNS" --net="/run/netns/$CLUSTER_NETNS" -- "$@"; }
kc() { ip netns exec "$CLUSTER_NETNS" "$K8S_BIN/kubectl" --kubeconfig="$PKI/admin.kubeconfig" "$@"; }
start() { # name cmd...: the recorded PID is the component's (setsid, nsenter exec)
  local n=$1
  shift
  setsid nsenter --mount="$MNTNS" --net="/run/netns/$CLUSTER_NETNS" -- "$@" >"$LOG/$n.log" 2>&1 </dev/null &
  echo $! >"$RUN/pids/$n"
}
waitfor() { # what seconds cmd...
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then
      say "$what"
      return 0
    fi
    sleep 0.2
  done
  say "timed out after ${secs}s waiting for: $what (logs in $LOG)"
  return 1
}
alive() { [[ -f $RUN/pids/$1 ]] && kill -0 "$(cat "$RUN/pids/$1")" 2>/dev/null; }

pki() {
  mkdir -p "$PKI"
  local cnf=$PKI/openssl.cnf
  [[ -f $PKI/ca.crt ]] && return
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -subj "/CN=edgeagent-test-ca" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  cert() { # name subject usage [sans]
    local n=$1 subj=$2 usage=$3 sans=${4:-}
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "$usage" >"$cnf"
    [[ -n $sans ]] && echo "subjectAltName=$sans" >>"$cnf"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$n.key" \
      -subj "$subj" -out "$PKI/$n.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 7 \
      -extfile "$cnf" -out "$PKI/$n.crt" 2>/dev/null
    rm -f "$PKI/$n.csr"
  }
  cert apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:10.96.0.1"
  cert kubelet "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
  cert admin "/O=system:masters/CN=admin" clientAuth
  cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  cert kcm "/CN=system:kube-controller-manager" clientAuth
  cert scheduler "/CN=system:kube-scheduler" clientAuth
  cert node "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  rm -f "$cnf"
  local u
  for u in admin kcm scheduler node; do
    cat >"$PKI/$u.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$PKI/ca.crt"}
users:
- name: $u
  user: {client-certificate: "$PKI/$u.crt", client-key: "$PKI/$u.key"}
contexts:
- name: test
  context: {cluster: test, user: $u}
current-context: test
EOF
  done
  chmod 600 "$PKI"/*.key
}

configs() {
  mkdir -p "$D/conf" "$D/cni/net.d"
  cat >"$D/conf/containerd.toml" <<EOF
version = 2
root = "$D/containerd"
state = "$RUN/containerd/state"
# Plugins that would write outside CLUSTER_DIR or need what this kernel lacks.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # No CAP_SYS_RESOURCE here: nobody may lower oom_score_adj, and CRI's
  # sandbox default (-998) makes runc fail ("can't get final child's PID
  # from pipe: EOF").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUN/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
EOF
  # Never used (every pod here is hostNetwork); without a CNI config the
  # node stays NotReady.
  cat >"$D/cni/net.d/10-bridge.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "edgeagent-test",
 "plugins": [{"type": "bridge", "bridge": "ea-cni0", "isGateway": true,
              "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.243.0.0/24"}]], "dataDir": "$D/cni/ipam"}},
             {"type": "loopback"}]}
EOF
  cat >"$D/conf/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
oomScoreAdj: 0
volumePluginDir: $D/kubelet/volume-plugins
containerRuntimeEndpoint: unix://$SOCK
podLogsDir: $D/pod-logs
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [10.96.0.10]
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
syncFrequency: 10s
EOF
}

lock() {
  mkdir -p "$(dirname "$LOCK")"
  # A holder process group (flock and the sleep it runs, both holding the
  # lock's file descriptor) keeps the lock from up to down.
  setsid flock -x "$LOCK" -c "echo $D > $LOCK.owner; echo locked; exec sleep infinity" >"$D/lock.out" 2>&1 </dev/null &
  local pid=$! i
  echo "$pid" >"$D/lock.pid"
  for ((i = 0; i < 1800; i++)); do
    grep -q locked "$D/lock.out" 2>/dev/null && return
    ((i % 150 == 149)) && say "waiting for the cluster lock held by $(cat "$LOCK.owner" 2>/dev/null)"
    sleep 0.2
  done
  kill -- -"$pid" 2>/dev/null
  say "could not take $LOCK within 6 minutes"
  exit 1
}

unlock() {
  [[ -f $D/lock.pid ]] || return 0
  if [[ -f $LOCK.owner ]] && [[ $(cat "$LOCK.owner") == "$D" ]]; then rm -f "$LOCK.owner"; fi
  kill -- -"$(cat "$D/lock.pid")" 2>/dev/null || true
  rm -f "$D/lock.pid" "$D/lock.out"
}

up() {
  : "${NODE_IP:?NODE_IP must be set}"
  [[ -e /run/netns/$CLUSTER_NETNS ]] || { say "no network namespace $CLUSTER_NETNS"; exit 1; }
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    [[ -x $K8S_BIN/$b ]] || { say "$K8S_BIN/$b is missing: run hack/get-apiserver.sh and hack/get-k8s-node.sh"; exit 1; }
  done
  for b in containerd ctr runc nsenter unshare openssl flock; do
    command -v $b >/dev/null || { say "$b is missing (hack/install-deps.sh)"; exit 1; }
  done
  [[ -e $MNTNS ]] && { say "already up ($MNTNS exists): run down first"; exit 1; }
  mkdir -p "$LOG"
  lock
  mkdir -p "$RUN"
  # kubelet sets these machine-wide sysctls; down puts them back.
  for s in vm/overcommit_memory kernel/panic kernel/panic_on_oops; do echo "$s=$(cat /proc/sys/$s)"; done >"$D/sysctls.before"
  mount --bind "$RUN" "$RUN"
  mount --make-private "$RUN"
  mkdir -p "$RUN/pids" "$RUN/containerd"
  touch "$MNTNS"
  unshare --mount="$MNTNS" --propagation private true
  nsenter --mount="$MNTNS" -- sh -c 'mount -t tmpfs -o mode=0755 edgeagent-run /run && mount -t tmpfs -o mode=0755 edgeagent-varlib /var/lib && mount -t tmpfs -o mode=0755 edgeagent-varlog /var/log'
  pki
  configs
  say "mount namespace, PKI and configs ready"

  start containerd containerd --config "$D/conf/containerd.toml"
  waitfor "containerd up" 20 inside ctr -a "$SOCK" version
  local img
  for img in ${CLUSTER_IMAGES:-}; do
    inside ctr -a "$SOCK" -n k8s.io images import "$img" >/dev/null
  done
  say "images: $(inside ctr -a "$SOCK" -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

  start etcd etcd --name node --data-dir "$D/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster node=http://127.0.0.1:2380 --log-level warn
  start kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$NODE_IP" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet.crt" --kubelet-client-key="$PKI/apiserver-kubelet.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.96.0.0/24 --allow-privileged=true \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --profiling=false --v=1
  waitfor "apiserver ready" 90 inside "$K8S_BIN/kubectl" --kubeconfig="$PKI/admin.kubeconfig" get --raw /readyz
  # A long node-monitor grace period: a test may add Node objects without a
  # kubelet (to show where the DaemonSet does not go) and keep them Ready.
  # (The node lifecycle controller itself must run: it lifts the
  # not-ready taint kubelet registers with.)
  start kube-controller-manager kube-controller-manager --kubeconfig="$PKI/kcm.kubeconfig" \
    --authentication-kubeconfig="$PKI/kcm.kubeconfig" --authorization-kubeconfig="$PKI/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --node-monitor-grace-period=1h \
    --flex-volume-plugin-dir="$D/kcm-volume-plugins" --cluster-name=edgeagent-test --v=1
  start kube-scheduler kube-scheduler --kubeconfig="$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig="$PKI/scheduler.kubeconfig" --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --v=1
  local extra=()
  [[ -n ${NODE_LABELS:-} ]] && extra+=("--node-labels=$NODE_LABELS")
  [[ -n ${NODE_TAINTS:-} ]] && extra+=("--register-with-taints=$NODE_TAINTS")
  start kubelet kubelet --config="$D/conf/kubelet.yaml" --kubeconfig="$PKI/node.kubeconfig" \
    --root-dir="$D/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" "${extra[@]}" --v=1
  waitfor "node $NODE_NAME Ready" 90 kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  waitfor "default ServiceAccount and root CA published" 60 kc -n default get serviceaccount/default configmap/kube-root-ca.crt
  say "up: kubectl with KUBECONFIG=$PKI/admin.kubeconfig inside netns $CLUSTER_NETNS"
}

stop() { # names...: SIGTERM, up to 10 s, then SIGKILL
  local n p pids=()
  for n in "$@"; do
    [[ -f $RUN/pids/$n ]] || continue
    p=$(cat "$RUN/pids/$n")
    kill -TERM "$p" 2>/dev/null && pids+=("$p")
    rm -f "$RUN/pids/$n"
  done
  local i any
  for ((i = 0; i < 100; i++)); do
    any=0
    for p in "${pids[@]}"; do [[ -d /proc/$p ]] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && any=1; done
    ((any == 0)) && return
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
}

down() {
  if [[ -e $MNTNS ]]; then
    if alive kube-apiserver && alive kubelet; then
      # Let the kubelet stop the pods the way a node drain would.
      kc delete daemonset,deployment,job --all -A --wait=false >/dev/null 2>&1 || true
      kc delete pod --all -A --grace-period=5 --timeout=40s >/dev/null 2>&1 || true
    fi
    stop kubelet kube-scheduler kube-controller-manager
    if alive containerd; then
      local c
      for c in $(inside ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do inside ctr -a "$SOCK" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
      sleep 0.5
      for c in $(inside ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do inside ctr -a "$SOCK" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true; done
      for c in $(inside ctr -a "$SOCK" -n k8s.io containers ls -q 2>/dev/null); do inside ctr -a "$SOCK" -n k8s.io containers rm "$c" >/dev/null 2>&1 || true; done
    fi
    stop kube-apiserver containerd
    stop etcd
    # Shims of our containerd (none should be left by now).
    local p
    for p in $(ps -eo pid=,comm=,args= | awk -v s="$SOCK" '$2 ~ /^containerd-shim/ && index($0, "-address " s) {print $1}'); do
      kill -KILL "$p" 2>/dev/null || true
    done
    # Container rootfs mounts live in our mount namespace: gone with it.
    umount "$MNTNS" 2>/dev/null || umount -l "$MNTNS" 2>/dev/null || true
  fi
  umount "$RUN" 2>/dev/null || umount -l "$RUN" 2>/dev/null || true
  # kubelet's cgroups (every hierarchy, cgroup v1 and v2), deepest first.
  local h
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $h ]] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null
    [[ -d $h ]] && say "WARNING: could not remove $h"
  done
  if [[ -f $D/sysctls.before ]]; then
    local k v
    while IFS='=' read -r k v; do
      [[ $(cat "/proc/sys/$k") == "$v" ]] || echo "$v" >"/proc/sys/$k"
    done <"$D/sysctls.before"
    rm -f "$D/sysctls.before"
  fi
  unlock
  # Everything but the logs.
  find "$D" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null || true
  say "down"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  kubectl)
    shift
    kc "$@"
    ;;
  env) echo "KUBECONFIG=$PKI/admin.kubeconfig" ;;
  *)
    echo "usage: hack/cluster/cluster.sh up | down | kubectl ARGS... | env" >&2
    exit 2
    ;;
esac
