// Package cluster is the real-cluster suite: the agent's image, built by
// `make image`, run by a real kubelet (containerd + runc) from the shipped
// manifests (deploy/daemonset) as a user installs them, on a node that is
// the test bed's edge namespace, next to BIRD configured as Calico, the
// pods and a client. Only the image reference, the agent's config (peers,
// pools, faster resync for the test) and the apiserver's address are
// overridden, by a kustomize overlay written here: the cluster runs no
// kube-proxy, so the in-cluster `kubernetes` Service address does not
// route, and the overlay points KUBERNETES_SERVICE_HOST at the apiserver's
// own address instead.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/clustertest"
	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/internal/testreq"
	"github.com/arraynetworks/edgeagent/status"
)

const (
	ns        = "edgeagent-system"
	vip       = "10.200.0.10"
	edgeLabel = "edgeagent.arraynetworks.com/edge"
	apvPort   = "9997"
)

func root() string { return apiservertest.RepoRoot() }

// images returns the docker-archive tarballs of the agent at two tags —
// `make image`'s bin/edgeagent-image.tar and a second build with another
// version, for the rollout — and of the sandbox (pause) image.
func images(t *testing.T, dir string) (v1, v2, v1Tar, v2Tar, pauseTar string) {
	t.Helper()
	v1Tar = filepath.Join(root(), "bin", "edgeagent-image.tar")
	if _, err := os.Stat(v1Tar); err != nil {
		if testreq.Strict() || os.Getenv("EDGEAGENT_REQUIRE_CLUSTER") == "1" {
			t.Fatalf("%s is missing: make test runs make image first", v1Tar)
		}
		build(t, dir+"/v1", "")
		v1Tar = filepath.Join(dir, "v1", "edgeagent-image.tar")
	}
	v1 = imageRef(t, v1Tar)
	tag := v1[strings.LastIndex(v1, ":")+1:]
	build(t, dir+"/v2", tag+"-next")
	v2Tar = filepath.Join(dir, "v2", "edgeagent-image.tar")
	v2 = imageRef(t, v2Tar)

	pauseBin := filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", pauseBin, "./hack/pause")
	cmd.Dir, cmd.Env = root(), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pause: %v\n%s", err, out)
	}
	pauseTar = filepath.Join(dir, "pause.tar")
	cmd = exec.Command("go", "run", "./hack/mkimage", "-single", pauseBin, "-entrypoint", "/pause", "-tag", "edgeagent.local/pause:1", "-tar", pauseTar)
	cmd.Dir = root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pause image: %v\n%s", err, out)
	}
	return
}

func build(t *testing.T, out, version string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(root(), "hack", "image.sh"))
	cmd.Dir = root()
	cmd.Env = append(os.Environ(), "IMAGE_OUT="+out)
	if version != "" {
		cmd.Env = append(cmd.Env, "VERSION="+version)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/image.sh: %v\n%s", err, b)
	}
}

var tagLine = regexp.MustCompile(`"RepoTags":\["([^"]+)"\]`)

func imageRef(t *testing.T, tarPath string) string {
	t.Helper()
	out, err := exec.Command("tar", "-xOf", tarPath, "manifest.json").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := tagLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no tag in %s: %s", tarPath, out)
	}
	return string(m[1])
}

func TestDaemonSetUnderKubelet(t *testing.T) {
	clustertest.RequireTools(t)
	t0 := time.Now()
	dir := t.TempDir()
	v1, v2, v1Tar, v2Tar, pauseTar := images(t, dir)
	t.Logf("images %s and %s (built in %s)", v1, v2, time.Since(t0).Round(time.Millisecond))

	bed := testbed.Up(t, testbed.Options{CalicoNodes: 2, WithoutFRR: true})
	edgeNS, edgeIP := bed.NS("edge"), bed.Env["EDGE_IP"]
	// The node starts with forwarding off: prepare-node must switch it on.
	mustExec(t, bed, "edge", "sysctl", "-w", "net.ipv4.ip_forward=0")
	emu := startAPVEmulator(t, bed, dir)

	tUp := time.Now()
	c := clustertest.Up(t, clustertest.Options{
		NetNS: edgeNS, NodeIP: edgeIP, NodeName: "edge-1",
		Labels: edgeLabel + "=true", Taints: edgeLabel + "=true:NoSchedule",
		Images: []string{v1Tar, v2Tar, pauseTar},
	})
	// A worker without the edge label, kept Ready (the suite's node monitor
	// grace period is an hour): the DaemonSet must not go there.
	addWorkerNode(t, c, "worker-1")

	// Install as docs/install.md says: namespace and APV Secret first, then
	// the base through an overlay.
	c.MustKubectl("create", "namespace", ns)
	c.MustKubectl("-n", ns, "create", "secret", "generic", "edgeagent-apv",
		"--from-literal=username=admin", "--from-literal=password=admin", "--from-file=ca.crt="+emu.ca)
	overlay := writeOverlay(t, dir, v1, bed)
	tApply := time.Now()
	c.MustKubectl("apply", "-k", overlay)
	c.MustKubectl("-n", ns, "rollout", "status", "ds/edgeagent", "--timeout=180s")
	t.Logf("RESULT nothing to Running and Ready pod: %s (cluster up %s, apply to Ready %s)",
		time.Since(tUp).Round(time.Millisecond), tApply.Sub(tUp).Round(time.Millisecond), time.Since(tApply).Round(time.Millisecond))

	pod := agentPod(t, c)
	t.Run("pod as shipped", func(t *testing.T) { checkPodAsShipped(t, c, pod) })
	mustSysctl(t, bed, "net.ipv4.ip_forward", "1")

	rep := agentStatus(t, c, pod.Name)
	if rep.Dataplane == nil || rep.Dataplane.IPTablesMode != "nft" || !strings.Contains(rep.Dataplane.IPTablesModeReason, "KUBE-IPTABLES-HINT") {
		t.Errorf("iptables backend: %+v (kubelet's hint chain is in nft on this node)", rep.Dataplane)
	} else {
		t.Logf("RESULT backend detection in the pod: %s (%s)", rep.Dataplane.IPTablesMode, rep.Dataplane.IPTablesModeReason)
	}

	applyLBRoute(t, c, dir, bed)
	poll.Until(t, 60*time.Second, "BIRD to learn the VIP from the edge", func() (bool, string) {
		out, ok := bed.BirdRoute(1, vip+"/32")
		return ok && strings.Contains(out, "via "+edgeIP), out
	})
	poll.Until(t, 30*time.Second, "the client to reach the pods through the VIP", func() (bool, string) {
		out, err := bed.Exec("client", "curl", "-s", "--max-time", "2", "http://"+vip+"/")
		return err == nil && strings.HasPrefix(strings.TrimSpace(out), "pod"), out
	})
	poll.Until(t, 60*time.Second, "kubectl get lbr: READY=True", func() (bool, string) {
		out, _ := c.Kubectl(context.Background(), "-n", "shop", "get", "lbr", "web", "--no-headers")
		f := strings.Fields(out)
		// NAME VS VIP PORTS GROUP RS POLICY READY AGE
		return len(f) >= 8 && f[7] == "True", out
	})
	t.Log(c.MustKubectl("-n", "shop", "get", "lbr", "-o", "wide"))
	poll.Until(t, 60*time.Second, "the APV emulator to hold the virtual service (credentials from the Secret)", func() (bool, string) {
		s := emu.saved()
		return strings.Contains(s, "slb virtual") && strings.Contains(s, vip), s
	})

	t.Run("rollout", func(t *testing.T) { rollout(t, c, bed, v2) })
	t.Run("readiness", func(t *testing.T) { readiness(t, c, bed) })
	t.Run("uninstall", func(t *testing.T) { uninstall(t, c, bed, overlay, dir, v2) })
	t.Run("helm", func(t *testing.T) { helmLifecycle(t, c, bed, dir, emu.ca, v2) })
	t.Logf("suite took %s", time.Since(t0).Round(time.Second))
}

func mustExec(t *testing.T, bed *testbed.Bed, where string, args ...string) string {
	t.Helper()
	out, err := bed.Exec(where, args...)
	if err != nil {
		t.Fatalf("%s: %v: %v\n%s", where, args, err, out)
	}
	return out
}

func mustSysctl(t *testing.T, bed *testbed.Bed, name, want string) {
	t.Helper()
	if got := strings.TrimSpace(mustExec(t, bed, "edge", "sysctl", "-n", name)); got != want {
		t.Fatalf("node %s = %s, want %s", name, got, want)
	}
}

type emulator struct {
	ca  string
	out *lockedBuffer
}

func (e *emulator) saved() string {
	s := e.out.String()
	if i := strings.LastIndex(s, "--- saved configuration"); i >= 0 {
		return s[i:]
	}
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAPVEmulator runs hack/apvemu in the edge namespace on loopback,
// where the hostNetwork pod reaches it.
func startAPVEmulator(t *testing.T, bed *testbed.Bed, dir string) *emulator {
	t.Helper()
	bin := filepath.Join(dir, "apvemu")
	cmd := exec.Command("go", "build", "-o", bin, "./hack/apvemu")
	cmd.Dir = root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build apvemu: %v\n%s", err, out)
	}
	e := &emulator{ca: filepath.Join(dir, "apvemu-ca.pem"), out: &lockedBuffer{}}
	p := bed.Command("edge", bin, "-listen", "127.0.0.1:"+apvPort, "-ca", e.ca, "-every", "1s")
	p.Stdout, p.Stderr = e.out, e.out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Process.Kill(); p.Wait() })
	poll.Until(t, 10*time.Second, "the APV emulator to listen", func() (bool, string) {
		return strings.Contains(e.out.String(), "listening"), e.out.String()
	})
	return e
}

func addWorkerNode(t *testing.T, c *clustertest.Cluster, name string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "node.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata: {name: %s, labels: {kubernetes.io/hostname: %s}}\n", name, name)), 0o644)
	c.MustKubectl("apply", "-f", f)
	now := time.Now().UTC().Format(time.RFC3339)
	c.MustKubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p",
		fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"stand-in","lastHeartbeatTime":%q,"lastTransitionTime":%q}]}}`, now, now))
}

// writeOverlay overrides only what a user of the test bed would: the image,
// the agent's config and (no kube-proxy here) the apiserver's address.
func writeOverlay(t *testing.T, dir, image string, bed *testbed.Bed) string {
	t.Helper()
	o := filepath.Join(dir, "overlay")
	os.MkdirAll(o, 0o755)
	name, tag, _ := strings.Cut(image, ":")
	name = strings.TrimPrefix(name, "index.docker.io/")
	cfg := fmt.Sprintf(`vipPools:
- cidr: 10.200.0.0/24
bgp:
  asn: 64512
  # No calico-node on this edge node: the test bed's Calico nodes dial the
  # agent on 179.
  listenPort: 179
  peers:
  - {address: %s}
  - {address: %s}
  gracefulRestart: {enabled: true, restartTime: 120s}
  importRoutes: true
  importCIDRs: [10.244.0.0/16]
dataplane:
  vipInterface: edge-vip0
  masquerade: true
  resyncInterval: 5s
  failureGracePeriod: 10s
apiserver: {readIdleTimeout: 10s, pingTimeout: 5s}
kubernetes: {autoLBRoute: true, neighborStatus: true, neighborStatusInterval: 30s}
apv:
  devices:
  - name: apv-emu
    url: https://127.0.0.1:%s
    usernameFile: /etc/edgeagent/apv/username
    passwordFile: /etc/edgeagent/apv/password
    caFile: /etc/edgeagent/apv/ca.crt
  syncInterval: 5s
  scanInterval: 10s
metricsAddress: ":9560"
adminAddress: "127.0.0.1:9561"
`, bed.Env["CALICO1_IP"], bed.Env["CALICO2_IP"], apvPort)
	cm, err := yaml.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]string{"name": "edgeagent-config", "namespace": ns},
		"data":     map[string]string{"config.yaml": cfg},
	})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(o, "config.yaml"), cm, 0o644)
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
images:
- name: ghcr.io/arraynetworks/edgeagent
  newName: %s
  newTag: %q
patches:
- path: config.yaml
- target: {kind: DaemonSet, name: edgeagent}
  patch: |
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: KUBERNETES_SERVICE_HOST, value: "%s"}
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: KUBERNETES_SERVICE_PORT, value: "6443"}
`, relTo(t, o, filepath.Join(root(), "deploy", "daemonset")), name, tag, bed.Env["EDGE_IP"])
	os.WriteFile(filepath.Join(o, "kustomization.yaml"), []byte(k), 0o644)
	return o
}

// relTo is target relative to dir: kustomize refuses absolute paths.
func relTo(t *testing.T, dir, target string) string {
	t.Helper()
	r, err := filepath.Rel(dir, target)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func agentPod(t *testing.T, c *clustertest.Cluster) corev1.Pod {
	t.Helper()
	out := c.MustKubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=edgeagent", "-o", "json")
	var list corev1.PodList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		ds, _ := c.Kubectl(context.Background(), "-n", ns, "get", "ds", "-o", "yaml")
		ev, _ := c.Kubectl(context.Background(), "get", "events", "-A")
		nodes, _ := c.Kubectl(context.Background(), "get", "nodes", "-o", "yaml")
		t.Fatalf("%d agent pods, want 1:\n%s\n%s\n%s\n%s", len(live), c.MustKubectl("-n", ns, "get", "pods", "-o", "wide"), ds, ev, nodes)
	}
	return live[0]
}

// The pod runs exactly as shipped: the manifest's securityContext,
// capabilities, probes and volumes unchanged, its ServiceAccount, on the
// edge node only, its init container done.
func checkPodAsShipped(t *testing.T, c *clustertest.Cluster, pod corev1.Pod) {
	out, err := exec.Command(filepath.Join(mustBin(t), "kubectl"), "kustomize", filepath.Join(root(), "deploy", "daemonset")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var shipped *appsv1.DaemonSet
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.Contains(doc, "kind: DaemonSet") {
			shipped = &appsv1.DaemonSet{}
			if err := yaml.Unmarshal([]byte(doc), shipped); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, got := shipped.Spec.Template.Spec, pod.Spec
	if got.NodeName != "edge-1" {
		t.Errorf("pod on node %q, want edge-1", got.NodeName)
	}
	if got.ServiceAccountName != "edgeagent" || !got.HostNetwork {
		t.Errorf("serviceAccount %q hostNetwork %v", got.ServiceAccountName, got.HostNetwork)
	}
	wc, gc := want.Containers[0], got.Containers[0]
	if !equality.Semantic.DeepEqual(wc.SecurityContext, gc.SecurityContext) {
		t.Errorf("securityContext differs from the manifest:\nshipped %+v\nrunning %+v", wc.SecurityContext, gc.SecurityContext)
	}
	if sc := gc.SecurityContext; sc == nil || sc.Privileged == nil || *sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("agent container must be unprivileged with a read-only root: %+v", sc)
	}
	// The apiserver fills in defaults (timeout, thresholds, scheme):
	// compare what the manifest sets.
	for _, p := range [][2]*corev1.Probe{{wc.ReadinessProbe, gc.ReadinessProbe}, {wc.LivenessProbe, gc.LivenessProbe}} {
		w, g := p[0], p[1]
		if g == nil || g.HTTPGet == nil || w.HTTPGet.Path != g.HTTPGet.Path || w.HTTPGet.Port != g.HTTPGet.Port || w.HTTPGet.Host != g.HTTPGet.Host ||
			w.PeriodSeconds != g.PeriodSeconds || w.FailureThreshold != g.FailureThreshold || w.InitialDelaySeconds != g.InitialDelaySeconds {
			t.Errorf("probe differs from the manifest: shipped %+v running %+v", w, g)
		}
	}
	if !equality.Semantic.DeepEqual(wc.VolumeMounts, gc.VolumeMounts[:len(wc.VolumeMounts)]) {
		t.Errorf("volume mounts differ: shipped %+v running %+v", wc.VolumeMounts, gc.VolumeMounts)
	}
	if len(pod.Status.InitContainerStatuses) != 1 || pod.Status.InitContainerStatuses[0].State.Terminated == nil || pod.Status.InitContainerStatuses[0].State.Terminated.ExitCode != 0 {
		t.Errorf("prepare-node init container: %+v", pod.Status.InitContainerStatuses)
	}
	logs := c.MustKubectl("-n", ns, "logs", pod.Name, "-c", "prepare-node")
	if !strings.Contains(logs, "net.ipv4.ip_forward") || !strings.Contains(logs, "was=0") {
		t.Errorf("prepare-node log does not say it switched forwarding on:\n%s", logs)
	}
	dsOut := c.MustKubectl("-n", ns, "get", "ds", "edgeagent", "-o", "json")
	var ds appsv1.DaemonSet
	if err := json.Unmarshal([]byte(dsOut), &ds); err != nil {
		t.Fatal(err)
	}
	if ds.Status.DesiredNumberScheduled != 1 || ds.Status.NumberReady != 1 {
		t.Errorf("DaemonSet desired %d ready %d: want one pod, on the edge node only (worker-1 has no edge label)",
			ds.Status.DesiredNumberScheduled, ds.Status.NumberReady)
	}
}

func mustBin(t *testing.T) string {
	b, err := apiservertest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func agentStatus(t *testing.T, c *clustertest.Cluster, pod string) status.Report {
	t.Helper()
	out := c.MustKubectl("-n", ns, "exec", pod, "-c", "edgeagent", "--", "edgeagent", "status", "-o", "json")
	var r status.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("edgeagent status -o json: %v\n%s", err, out)
	}
	return r
}

func applyLBRoute(t *testing.T, c *clustertest.Cluster, dir string, bed *testbed.Bed) {
	t.Helper()
	f := filepath.Join(dir, "lbroute.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec:
  vsIP: %s
  ports: [{port: 80, protocol: TCP, targetPort: %s}]
  policy: rr
  realServers: [{ip: %s}, {ip: %s}]
  healthCheck: {type: TCP, intervalSeconds: 1, timeoutSeconds: 1, riseCount: 1, fallCount: 2}
`, vip, bed.Env["POD_PORT"], bed.Env["POD1_IP"], bed.Env["POD2_IP"])), 0o644)
	c.MustKubectl("apply", "-f", f)
}

// requestLoop sends requests through the VIP from the client until stop.
type requestLoop struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	done       chan struct{}
	lastErr    atomic.Value
}

func startLoop(bed *testbed.Bed) *requestLoop {
	l := &requestLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			// One curl process, many requests: new connections each.
			out, err := bed.Exec("client", "sh", "-c",
				`for i in 1 2 3 4 5 6 7 8 9 10; do curl -s -o /dev/null -w '%{http_code}\n' --max-time 2 http://`+vip+`/ || echo fail; sleep 0.05; done`)
			for _, line := range strings.Fields(out) {
				if line == "200" {
					l.ok.Add(1)
				} else {
					l.failed.Add(1)
					l.lastErr.Store(line)
				}
			}
			if err != nil {
				l.lastErr.Store(err.Error())
			}
		}
	}()
	return l
}

func (l *requestLoop) end() (ok, failed int64) {
	close(l.stop)
	<-l.done
	return l.ok.Load(), l.failed.Load()
}

// edgeChainCounters sums the packet counters of the agent's service
// chains: iptables-restore rewriting a chain resets them, so counters that
// only grow across the rollout show the new pod adopted the rules.
func edgeChainCounters(t *testing.T, bed *testbed.Bed) int64 {
	out := mustExec(t, bed, "edge", "iptables-save", "-c", "-t", "nat")
	var n int64
	re := regexp.MustCompile(`^\[(\d+):\d+\] -A EDGE-VS-`)
	for _, line := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			n += v
		}
	}
	return n
}

func rollout(t *testing.T, c *clustertest.Cluster, bed *testbed.Bed, v2 string) {
	old := agentPod(t, c)
	// Enough new connections through the rules that a rewrite (counters
	// back to 0) could not catch up during the rollout.
	mustExec(t, bed, "client", "sh", "-c", `for i in $(seq 150); do curl -s -o /dev/null --max-time 2 http://`+vip+`/; done`)
	loop := startLoop(bed)
	time.Sleep(2 * time.Second)
	// BIRD must keep the VIP all along (graceful restart).
	var withdrawn atomic.Bool
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		for {
			select {
			case <-loop.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, ok := bed.BirdRoute(1, vip+"/32"); !ok {
				withdrawn.Store(true)
			}
		}
	}()
	before := edgeChainCounters(t, bed)
	start := time.Now()
	c.MustKubectl("-n", ns, "set", "image", "ds/edgeagent", "edgeagent="+v2, "prepare-node="+v2)
	c.MustKubectl("-n", ns, "rollout", "status", "ds/edgeagent", "--timeout=180s")
	rolled := time.Since(start)
	pod := agentPod(t, c)
	if pod.Name == old.Name {
		t.Fatal("the rollout kept the old pod")
	}
	poll.Until(t, 30*time.Second, "BIRD's session with the new agent established", func() (bool, string) {
		// A new session: entered its state after the image change.
		st, since := bed.BirdSession(1, bed.EdgeProtocol())
		return strings.Contains(st, "Established") && since.After(start.Add(-time.Second)) && time.Since(since) < time.Minute,
			fmt.Sprintf("%s since %v", st, since)
	})
	established := time.Since(start)
	after := edgeChainCounters(t, bed)
	time.Sleep(5 * time.Second)
	ok, failed := loop.end()
	<-watch
	t.Logf("RESULT rollout to %s: %d failed of %d requests; rollout status %s, BIRD session re-established %s after the image change; VIP withdrawn from BIRD: %v",
		v2, failed, ok+failed, rolled.Round(time.Millisecond), established.Round(time.Millisecond), withdrawn.Load())
	if failed > 0 {
		t.Errorf("%d of %d requests failed during the rollout (last: %v)", failed, ok+failed, loop.lastErr.Load())
	}
	if withdrawn.Load() {
		t.Error("BIRD lost the VIP during the rollout: graceful restart did not hold it")
	}
	if ok == 0 {
		t.Error("no request went through during the rollout")
	}
	if after < before {
		t.Errorf("service chain counters went from %d to %d: the new pod rewrote the rules instead of adopting them", before, after)
	}
	if out := c.MustKubectl("-n", ns, "exec", pod.Name, "-c", "edgeagent", "--", "edgeagent", "version"); !strings.Contains(out, v2[strings.LastIndex(v2, ":")+1:]) {
		t.Errorf("the new pod runs %q, want %s", out, v2)
	}
}

// The readiness probe does what docs/install.md says: forwarding switched
// off on the node (the agent may not switch it back: /proc/sys is
// read-only in its container) makes the dataplane fail; after
// failureGracePeriod the pod is not Ready; forwarding back on, Ready again.
func readiness(t *testing.T, c *clustertest.Cluster, bed *testbed.Bed) {
	pod := agentPod(t, c).Name
	ready := func() string {
		out, _ := c.Kubectl(context.Background(), "-n", ns, "get", "pod", pod, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return strings.TrimSpace(out)
	}
	start := time.Now()
	mustExec(t, bed, "edge", "sysctl", "-w", "net.ipv4.ip_forward=0")
	poll.Until(t, 90*time.Second, "the pod to turn not Ready", func() (bool, string) {
		r := ready()
		return r == "False", r
	})
	notReady := time.Since(start)
	rep := agentStatus(t, c, pod)
	if rep.Ready || rep.Dataplane == nil || len(rep.Dataplane.Failures) == 0 || rep.Dataplane.Failures[0].Step != "sysctl" {
		t.Errorf("status while not ready: ready %v dataplane %+v", rep.Ready, rep.Dataplane)
	}
	poll.Until(t, 30*time.Second, "a DataplaneFailing Warning on the Node", func() (bool, string) {
		out, _ := c.Kubectl(context.Background(), "get", "events", "-n", "default", "--field-selector", "involvedObject.kind=Node,involvedObject.name=edge-1,reason=DataplaneFailing")
		return strings.Contains(out, "read-only file system"), out
	})
	table, _ := c.Kubectl(context.Background(), "-n", ns, "exec", pod, "-c", "edgeagent", "--", "edgeagent", "status")
	t.Logf("edgeagent status while forwarding is off:\n%s", table)
	start = time.Now()
	mustExec(t, bed, "edge", "sysctl", "-w", "net.ipv4.ip_forward=1")
	poll.Until(t, 90*time.Second, "the pod to be Ready again", func() (bool, string) {
		r := ready()
		return r == "True", r
	})
	t.Logf("RESULT readiness: not Ready %s after forwarding went off (resync 5s + grace 10s + probe 3×5s), Ready %s after it came back",
		notReady.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// Uninstall as docs/install.md tells a user: delete the LBRoutes (the VIPs
// are withdrawn), delete the install, run the cleanup DaemonSet on each edge
// node, delete it. Afterwards the node holds no EDGE- chain (either
// backend), no edge-vip0 and no proto-237 route.
func uninstall(t *testing.T, c *clustertest.Cluster, bed *testbed.Bed, overlay, dir, image string) {
	c.MustKubectl("delete", "lbr", "--all", "-A")
	poll.Until(t, 30*time.Second, "BIRD to lose the VIP", func() (bool, string) {
		out, ok := bed.BirdRoute(1, vip+"/32")
		return !ok, out
	})
	c.MustKubectl("delete", "-k", overlay, "--wait=true", "--timeout=120s")
	c.MustKubectl("wait", "--for=delete", "namespace/"+ns, "--timeout=120s")
	if out := mustExec(t, bed, "edge", "ip", "link", "show"); !strings.Contains(out, "edge-vip0") {
		t.Fatalf("the agent's pod stopping removed edge-vip0 (it must leave the kernel state for a restart):\n%s", out)
	}
	co := filepath.Join(dir, "cleanup")
	os.MkdirAll(co, 0o755)
	name, tag, _ := strings.Cut(image, ":")
	os.WriteFile(filepath.Join(co, "kustomization.yaml"), []byte(fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
images:
- name: ghcr.io/arraynetworks/edgeagent
  newName: %s
  newTag: %q
`, relTo(t, co, filepath.Join(root(), "deploy", "cleanup")), strings.TrimPrefix(name, "index.docker.io/"), tag)), 0o644)
	c.MustKubectl("apply", "-k", co)
	c.MustKubectl("-n", ns, "rollout", "status", "ds/edgeagent-cleanup", "--timeout=120s")
	poll.Until(t, 60*time.Second, "the cleanup pod to be Ready on the edge node", func() (bool, string) {
		out, _ := c.Kubectl(context.Background(), "-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=edgeagent-cleanup",
			"-o", `jsonpath={range .items[*]}{.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		return strings.TrimSpace(out) == "edge-1 True", out
	})
	logs, _ := c.Kubectl(context.Background(), "-n", ns, "logs", "ds/edgeagent-cleanup")
	t.Logf("cleanup pod log:\n%s", logs)
	for _, tool := range []string{"iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"} {
		if out := mustExec(t, bed, "edge", tool); strings.Contains(out, "EDGE-") {
			t.Errorf("%s after cleanup still shows EDGE- chains:\n%s", tool, out)
		}
	}
	if out, _ := bed.Exec("edge", "ip", "link", "show", "edge-vip0"); !strings.Contains(out, "does not exist") {
		t.Errorf("edge-vip0 after cleanup: %s", out)
	}
	if out := mustExec(t, bed, "edge", "ip", "route", "show", "proto", "237"); strings.TrimSpace(out) != "" {
		t.Errorf("proto 237 routes after cleanup:\n%s", out)
	}
	c.MustKubectl("delete", "-k", co, "--wait=true", "--timeout=120s")
}
