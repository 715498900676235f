// Package clustertest runs a real single-node Kubernetes cluster for tests
// (hack/cluster/cluster.sh: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, containerd and runc), whose node is a network
// namespace the test already has — the test bed's edge namespace — and
// tears it down when the test ends. Images come from docker-archive
// tarballs (hack/image.sh); nothing is pulled.
package clustertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/testreq"
)

// Options describe the node.
type Options struct {
	NetNS    string // the node's network namespace (must exist)
	NodeIP   string // its address there (not loopback)
	NodeName string // default edge-1
	Labels   string // kubelet --node-labels
	Taints   string // kubelet --register-with-taints
	// Images are docker-archive tarballs imported into containerd; the
	// pause image (PauseImage) must be among them.
	Images     []string
	PauseImage string // default edgeagent.local/pause:1
}

// Cluster is a running cluster.
type Cluster struct {
	Dir        string // its state and logs
	Kubeconfig string // admin credentials; the server is https://NodeIP:6443
	opts       Options
	t          testing.TB
	script     string
	bin        string
	env        []string
}

// missing skips the real-cluster suite, saying what it lacks, or fails it
// in CI, under make test, or with EDGEAGENT_REQUIRE_CLUSTER=1.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("EDGEAGENT_REQUIRE_CLUSTER") == "1" {
		t.Fatalf("real-cluster suite (EDGEAGENT_REQUIRE_CLUSTER=1): %s", msg)
	}
	testreq.Missing(t, "real-cluster suite: %s (make test installs and builds it)", msg)
}

// RequireTools skips (or in CI fails) unless the test runs as root with
// containerd, runc and the Kubernetes binaries in place.
func RequireTools(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root (kubelet, containerd, network and mount namespaces)")
	}
	for _, b := range []string{"containerd", "ctr", "runc", "nsenter", "unshare", "openssl", "flock", "/usr/lib/cni/bridge"} {
		if _, err := exec.LookPath(b); err != nil {
			missing(t, "%s is missing (apt-get install containerd runc containernetworking-plugins)", b)
		}
	}
	bin, err := apiservertest.BinDir()
	if err != nil {
		missing(t, "%v", err)
	}
	for _, b := range []string{"kubelet", "kube-controller-manager", "kube-scheduler", "kubectl", "kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			missing(t, "%s is not in %s (hack/get-apiserver.sh, hack/get-k8s-node.sh)", b, bin)
		}
	}
	return bin
}

// Up starts the cluster and registers its teardown, which also checks that
// the cluster left nothing behind outside its folders.
func Up(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin := RequireTools(t)
	if o.NodeName == "" {
		o.NodeName = "edge-1"
	}
	dir, err := os.MkdirTemp("", "eacluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		Dir: dir, Kubeconfig: filepath.Join(dir, "pki", "admin.kubeconfig"), opts: o, t: t,
		script: filepath.Join(apiservertest.RepoRoot(), "hack", "cluster", "cluster.sh"), bin: bin,
	}
	c.env = append(os.Environ(),
		"CLUSTER_DIR="+dir, "CLUSTER_NETNS="+o.NetNS, "NODE_IP="+o.NodeIP, "NODE_NAME="+o.NodeName,
		"NODE_LABELS="+o.Labels, "NODE_TAINTS="+o.Taints, "K8S_BIN="+bin,
		"CLUSTER_IMAGES="+strings.Join(o.Images, " "))
	if o.PauseImage != "" {
		c.env = append(c.env, "PAUSE_IMAGE="+o.PauseImage)
	}
	before := globalState()
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
		if out, err := c.run("down"); err != nil {
			t.Errorf("cluster down: %v\n%s", err, out)
		}
		if after := globalState(); after != before {
			t.Errorf("the cluster left state outside its folders:\n--- before\n%s\n--- after\n%s", before, after)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	start := time.Now()
	if out, err := c.run("up"); err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	t.Logf("cluster up in %s (node %s in %s)", time.Since(start).Round(time.Millisecond), o.NodeName, o.NetNS)
	return c
}

func (c *Cluster) run(verb string) (string, error) {
	cmd := exec.Command(c.script, verb)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Kubectl runs kubectl with the admin credentials inside the node's
// network namespace (where the apiserver listens).
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.opts.NetNS, filepath.Join(c.bin, "kubectl"), "--kubeconfig", c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustKubectl is Kubectl that fails the test on error.
func (c *Cluster) MustKubectl(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.Kubectl(ctx, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *Cluster) dumpLogs() {
	for _, n := range []string{"kubelet", "containerd", "kube-apiserver", "kube-controller-manager"} {
		b, err := os.ReadFile(filepath.Join(c.Dir, "logs", n+".log"))
		if err != nil {
			continue
		}
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		c.t.Logf("--- %s log (tail)\n%s", n, b)
	}
}

// globalState is what the cluster may change outside its folders and must
// put back: kubelet's machine-wide sysctls, its cgroups, and the paths
// kubelet and containerd write to that no flag moves (hidden in the
// cluster's mount namespace; checked here in the test's).
func globalState() string {
	var b strings.Builder
	for _, s := range []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"} {
		v, _ := os.ReadFile("/proc/sys/" + s)
		fmt.Fprintf(&b, "%s=%s\n", s, strings.TrimSpace(string(v)))
	}
	paths, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	for _, p := range append(paths, "/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/containerd", "/usr/libexec/kubernetes", "/var/lib/containerd") {
		if _, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "exists: %s\n", p)
		}
	}
	return b.String()
}
