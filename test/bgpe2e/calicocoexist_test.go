package bgpe2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/agentproc"
	"github.com/arraynetworks/edgeagent/internal/testbed"
)

// calico-node's BIRD also runs on the edge node and installs the pod blocks
// into the kernel itself (proto bird, metric 32; in IPIP or VXLAN mode
// through the tunnel, here through another next hop: calico2). The agent,
// learning the same block over its own session, must not take the route
// over: `ip route get` keeps BIRD's, /status says the agent's is only a
// fallback, and once BIRD withdraws its route the agent's carries the
// traffic.
func TestAgentYieldsToCalicoNodeBIRDOnTheEdge(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{CalicoNodes: 2, WithoutFRR: true})
	calico1, calico2 := bed.Env["CALICO1_IP"], bed.Env["CALICO2_IP"]
	block, podIP := "10.244.1.0/24", bed.Env["POD1_IP"]

	dir := t.TempDir()
	sock := filepath.Join(dir, "bird.ctl")
	conf := fmt.Sprintf(`router id %s;
protocol device { scan time 2; }
# What calico-node's BIRD on this node would install for calico1's block
# when it reaches it through a tunnel: another path than the agent's.
protocol static pods {
  ipv4;
  route %s via %s;
}
protocol kernel {
  ipv4 { import none; export all; };
  metric 32;
  scan time 2;
}
`, bed.Env["EDGE_IP"], block, calico2)
	confPath := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	bird := bed.Command("edge", "bird", "-f", "-c", confPath, "-s", sock)
	if err := bird.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bird.Process.Kill(); bird.Wait() })
	birdc := func(args ...string) string {
		out, _ := bed.Exec("edge", append([]string{"birdc", "-s", sock}, args...)...)
		return out
	}
	poll.Until(t, 10*time.Second, "the edge's BIRD to install the block (proto bird metric 32)", func() (bool, string) {
		out, _ := bed.Exec("edge", "ip", "route", "show", block)
		return strings.Contains(out, "proto bird metric 32"), out
	})

	cfg := writeConfig(t, bed, t.TempDir(), "")
	a := startAgent(t, bed, cfg)
	writeRoute(t, cfg, "web", "10.200.0.10", bed)
	poll.Until(t, 20*time.Second, "the agent's route beside BIRD's", func() (bool, string) {
		out, _ := bed.Exec("edge", "ip", "route", "show", block)
		return strings.Contains(out, "via "+calico1+" dev eth0 proto 237 metric 1024") && strings.Contains(out, "proto bird metric 32"), out
	})
	routeGet := func() string {
		out, _ := bed.Exec("edge", "ip", "route", "get", podIP)
		return out
	}
	if out := routeGet(); !strings.Contains(out, "via "+calico2) {
		t.Fatalf("ip route get %s = %q: BIRD's route (via %s) must stay in use", podIP, out, calico2)
	}
	poll.Until(t, 10*time.Second, "/status: the learned route is BIRD's fallback", func() (bool, string) {
		rep, err := a.Status()
		if err != nil || len(rep.LearnedRoutes) != 1 {
			return false, fmt.Sprintf("%+v %v", rep.LearnedRoutes, err)
		}
		lr := rep.LearnedRoutes[0]
		return lr.Metric == 1024 && strings.HasPrefix(lr.ShadowedBy, "bird metric 32 via ["+calico2), fmt.Sprintf("%+v", lr)
	})
	out, _ := bed.Exec("edge", agentproc.Binary(t), "status", "--config", cfg)
	if !strings.Contains(out, "fallback: the kernel prefers bird metric 32") {
		t.Errorf("edgeagent status does not say the route is a fallback:\n%s", out)
	}
	poll.Until(t, 10*time.Second, "the client reaches the pod through the VIP (over BIRD's path)", func() (bool, string) {
		out, err := bed.Exec("client", "curl", "-s", "--max-time", "2", "http://10.200.0.10/")
		return err == nil && strings.TrimSpace(out) == "pod1", out
	})

	// BIRD withdraws its route (calico-node stopped, the block moved ...).
	birdc("disable", "pods")
	poll.Until(t, 10*time.Second, "ip route get to use the agent's route once BIRD's is gone", func() (bool, string) {
		out := routeGet()
		return strings.Contains(out, "via "+calico1), out
	})
	poll.Until(t, 10*time.Second, "/status: no longer shadowed", func() (bool, string) {
		rep, err := a.Status()
		return err == nil && len(rep.LearnedRoutes) == 1 && rep.LearnedRoutes[0].ShadowedBy == "", fmt.Sprintf("%+v %v", rep.LearnedRoutes, err)
	})
	poll.Until(t, 10*time.Second, "the client still reaches the pod", func() (bool, string) {
		out, err := bed.Exec("client", "curl", "-s", "--max-time", "2", "http://10.200.0.10/")
		return err == nil && strings.TrimSpace(out) == "pod1", out
	})
	// And BIRD coming back takes precedence again, without the agent
	// touching its own route.
	birdc("enable", "pods")
	poll.Until(t, 10*time.Second, "BIRD's route back in use", func() (bool, string) {
		out := routeGet()
		return strings.Contains(out, "via "+calico2), out
	})
}
