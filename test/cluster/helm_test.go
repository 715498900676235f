package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/clustertest"
	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/internal/testreq"
	"github.com/arraynetworks/edgeagent/status"
)

// helmBin is hack/get-tools.sh's helm (EDGEAGENT_TOOLS); missing, it
// skips the subtest, or fails it under CI or make test (testreq).
func helmBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EDGEAGENT_TOOLS")
	if dir == "" {
		dir = "/var/cache/edgeagent/tools"
	}
	p := filepath.Join(dir, "helm")
	if _, err := os.Stat(p); err != nil {
		testreq.Missing(t, "%s is missing: run hack/get-tools.sh", p)
	}
	return p
}

// helmLifecycle installs the Helm chart on the same cluster once the
// kustomize installation is gone, upgrades it with a config change and
// uninstalls it: the chart's objects run under kubelet as the base's do.
// The values mirror writeOverlay's (the config replaced, the apiserver's
// address in the environment: the cluster runs no kube-proxy); the APV
// Secret is the one docs/install.md describes, named per device.
func helmLifecycle(t *testing.T, c *clustertest.Cluster, bed *testbed.Bed, dir, emuCA, image string) {
	helm := helmBin(t)
	chart := filepath.Join(root(), "deploy", "helm", "edgeagent")
	run := func(args ...string) string {
		t.Helper()
		cmd := bed.Command("edge", append([]string{helm}, append(args, "--kubeconfig", c.Kubeconfig, "--namespace", ns)...)...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(dir, "helm", "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(dir, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(dir, "helm", "data"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	name, tag, _ := strings.Cut(image, ":")
	values := filepath.Join(dir, "helm-values.yaml")
	if err := os.WriteFile(values, []byte(fmt.Sprintf(`image: {repository: %s, tag: %q}
config:
  vipPools: [{cidr: 10.200.0.0/24}]
  bgp:
    listenPort: 179
    nodePeers: null
    peers: [{address: %s}, {address: %s}]
  dataplane: {resyncInterval: 5s, failureGracePeriod: 10s}
apv:
  devices:
  - name: apv-emu
    url: https://127.0.0.1:%s
    usernameFile: /etc/edgeagent/apv/username
    passwordFile: /etc/edgeagent/apv/password
    caFile: /etc/edgeagent/apv/ca.crt
  syncInterval: 5s
  scanInterval: 10s
extraEnv:
- {name: KUBERNETES_SERVICE_HOST, value: %q}
- {name: KUBERNETES_SERVICE_PORT, value: "6443"}
`, strings.TrimPrefix(name, "index.docker.io/"), tag, bed.Env["CALICO1_IP"], bed.Env["CALICO2_IP"], apvPort, bed.Env["EDGE_IP"])), 0o644); err != nil {
		t.Fatal(err)
	}
	// The namespace and the Secret first, as for the base (the Secret is
	// the user's, not the chart's).
	c.MustKubectl("create", "namespace", ns)
	c.MustKubectl("-n", ns, "create", "secret", "generic", "edgeagent-apv",
		"--from-literal=username=admin", "--from-literal=password=admin", "--from-file=ca.crt="+emuCA)

	t0 := time.Now()
	run("install", "edgeagent", chart, "-f", values)
	c.MustKubectl("-n", ns, "rollout", "status", "ds/edgeagent", "--timeout=180s")
	pod := agentPod(t, c)
	waitAgent := func(pod string) {
		t.Helper()
		poll.Until(t, 90*time.Second, "the chart's agent: both sessions established and the APV reachable", func() (bool, string) {
			out, err := c.Kubectl(context.Background(), "-n", ns, "exec", pod, "-c", "edgeagent", "--", "edgeagent", "status", "-o", "json")
			if err != nil {
				return false, err.Error()
			}
			var rep status.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				return false, err.Error()
			}
			up := 0
			for _, n := range rep.Neighbors {
				if n.State == "established" {
					up++
				}
			}
			return up == 2 && len(rep.APV) == 1 && rep.APV[0].Up, out
		})
	}
	waitAgent(pod.Name)
	t.Logf("RESULT helm install → pod Ready, sessions up, APV reached: %s", time.Since(t0).Round(time.Millisecond))

	// A config change rolls the pods (the config checksum on the template).
	t1 := time.Now()
	run("upgrade", "edgeagent", chart, "-f", values, "--set", "config.dataplane.resyncInterval=6s")
	c.MustKubectl("-n", ns, "rollout", "status", "ds/edgeagent", "--timeout=180s")
	poll.Until(t, 60*time.Second, "the old pod gone after the upgrade", func() (bool, string) {
		out, _ := c.Kubectl(context.Background(), "-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=edgeagent", "-o", "name")
		return !strings.Contains(out, pod.Name) && strings.TrimSpace(out) != "", out
	})
	next := agentPod(t, c)
	cfg := c.MustKubectl("-n", ns, "get", "configmap", "edgeagent-config", "-o", `jsonpath={.data.config\.yaml}`)
	if !strings.Contains(cfg, "resyncInterval: 6s") {
		t.Errorf("config after the upgrade:\n%s", cfg)
	}
	waitAgent(next.Name)
	t.Logf("RESULT helm upgrade (config change) → new pod Ready: %s", time.Since(t1).Round(time.Millisecond))
	if h := run("history", "edgeagent"); !strings.Contains(h, "upgrade") && strings.Count(h, "\n") < 3 {
		t.Errorf("helm history:\n%s", h)
	}

	t2 := time.Now()
	run("uninstall", "edgeagent", "--wait")
	poll.Until(t, 120*time.Second, "the agent's pods and DaemonSet gone", func() (bool, string) {
		out, _ := c.Kubectl(context.Background(), "-n", ns, "get", "ds,pods,configmap,serviceaccount", "-l", "app.kubernetes.io/name=edgeagent", "-o", "name")
		return strings.TrimSpace(out) == "", out
	})
	if _, err := c.Kubectl(context.Background(), "get", "crd", "lbroutes.apv.arraynetworks.com"); err != nil {
		t.Errorf("helm uninstall removed the LBRoute CRD (and every LBRoute with it): %v", err)
	}
	t.Logf("RESULT helm uninstall → everything of the release gone: %s", time.Since(t2).Round(time.Millisecond))
}
