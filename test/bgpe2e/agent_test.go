// Package bgpe2e runs the real edgeagent binary in the edge namespace of the
// BGP test bed (hack/testbed) against BIRD configured as Calico and FRR:
// the acceptance tests of the BGP issue, end to end from an LBRoute file to
// the peers' RIBs and the edge kernel.
package bgpe2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/agentproc"
	"github.com/arraynetworks/edgeagent/internal/testbed"
)

const adminAddr = "127.0.0.1:19561"

// writeConfig writes the agent's config into dir: standalone source dir
// "routes", the bed's peers, import of the pod CIDR. password is FRR's.
func writeConfig(t testing.TB, bed *testbed.Bed, dir, frrPassword string) string {
	t.Helper()
	routes := filepath.Join(dir, "routes")
	if err := os.MkdirAll(routes, 0o755); err != nil {
		t.Fatal(err)
	}
	peers := fmt.Sprintf("  - {address: %s}\n", bed.Env["CALICO1_IP"])
	if fip := bed.Env["FRR_IP"]; fip != "" {
		peers += fmt.Sprintf("  - {address: %s, password: %q}\n", fip, frrPassword)
	}
	cfg := fmt.Sprintf(`nodeName: edge
source: {dir: routes}
vipPools: [{cidr: 10.200.0.0/16}]
bgp:
  asn: 64512
  peers:
%s  importCIDRs: [10.244.0.0/16]
adminAddress: %q
metricsAddress: "127.0.0.1:19560"
logLevel: debug
`, peers, adminAddr)
	path := filepath.Join(dir, "edgeagent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent runs the agent in the bed's edge namespace.
func startAgent(t testing.TB, bed *testbed.Bed, config string, flags ...string) *agentproc.Agent {
	t.Helper()
	return agentproc.Start(t, bed, "edge", config, flags...)
}

func writeRoute(t testing.TB, config, name, vip string, bed *testbed.Bed) string {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: %s, namespace: shop}
spec:
  vsIP: %s
  ports: [{port: 80, protocol: TCP, targetPort: %s}]
  realServers: [{ip: %s}]
  healthCheck: {type: None}
`, name, vip, bed.Env["POD_PORT"], bed.Env["POD1_IP"])
	path := filepath.Join(filepath.Dir(config), "routes", name+".yaml")
	if err := os.WriteFile(path+".tmp", []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

func edgeRoutes(bed *testbed.Bed) string {
	out, _ := bed.Exec("edge", "ip", "route", "show", "proto", "237")
	return out
}

func TestAgentAdvertisesVIPAndLearnsPodRoutes(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{})
	edge, calico, frr := bed.Env["EDGE_IP"], bed.Env["CALICO1_IP"], bed.Env["FRR_IP"]
	cfg := writeConfig(t, bed, t.TempDir(), "")
	a := startAgent(t, bed, cfg)

	routeFile := writeRoute(t, cfg, "web", "10.200.0.10", bed)
	poll.Until(t, 20*time.Second, "BIRD to have the VIP via the edge", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return ok && strings.Contains(out, "via "+edge), out
	})
	poll.Until(t, 10*time.Second, "FRR to have the VIP via the edge", func() (bool, string) {
		out, ok := bed.FRRRoute("10.200.0.10/32")
		return ok && strings.Contains(out, edge), out
	})
	poll.Until(t, 10*time.Second, "the pod block in the edge kernel, proto 237", func() (bool, string) {
		out := edgeRoutes(bed)
		return strings.Contains(out, "10.244.1.0/24 via "+calico), out
	})
	poll.Until(t, 10*time.Second, "status: both neighbors established", func() (bool, string) {
		c, f := a.Neighbor(calico), a.Neighbor(frr)
		return c.State == "established" && f.State == "established" && c.Accepted == 1 && c.Advertised == 1,
			fmt.Sprintf("calico %+v frr %+v", c, f)
	})
	rep, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.LearnedRoutes) != 1 || rep.LearnedRoutes[0].Prefix != "10.244.1.0/24" {
		t.Errorf("learnedRoutes = %+v", rep.LearnedRoutes)
	}
	poll.Until(t, 10*time.Second, "curl from the client to the VIP", func() (bool, string) {
		out, err := bed.Exec("client", "curl", "-s", "--max-time", "2", "http://10.200.0.10/")
		return err == nil && strings.TrimSpace(out) == "pod1", out
	})

	if err := os.Remove(routeFile); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "BIRD to withdraw the VIP", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return !ok, out
	})
	poll.Until(t, 10*time.Second, "FRR to withdraw the VIP", func() (bool, string) {
		out, ok := bed.FRRRoute("10.200.0.10/32")
		return !ok, out
	})
	if out := edgeRoutes(bed); !strings.Contains(out, "10.244.1.0/24") {
		t.Errorf("the learned route left the kernel with the LBRoute:\n%s", out)
	}

	// Restart BIRD: the session and the learned route recover, the agent
	// keeps running.
	writeRoute(t, cfg, "web", "10.200.0.10", bed)
	bed.StopBird(1, false)
	bed.StartBird()
	poll.Until(t, 20*time.Second, "BIRD session back", func() (bool, string) {
		n := a.Neighbor(calico)
		return n.State == "established", fmt.Sprintf("%+v", n)
	})
	poll.Until(t, 10*time.Second, "BIRD to have the VIP again", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return ok, out
	})
	poll.Until(t, 10*time.Second, "the learned route back", func() (bool, string) {
		out := edgeRoutes(bed)
		return strings.Contains(out, "10.244.1.0/24 via "+calico), out
	})
	if !a.Alive() {
		t.Fatal("the agent exited while BIRD restarted")
	}
}

func TestAgentMD5WithFRR(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{FRRPassword: "edge-secret"})
	frr := bed.Env["FRR_IP"]
	dir := t.TempDir()
	cfg := writeConfig(t, bed, dir, "not-the-secret")
	a := startAgent(t, bed, cfg)
	writeRoute(t, cfg, "web", "10.200.0.10", bed)
	poll.Until(t, 30*time.Second, "status to say why FRR is down", func() (bool, string) {
		n := a.Neighbor(frr)
		return n.State != "established" && strings.Contains(n.LastError, "MD5"), fmt.Sprintf("%+v", n)
	})
	out, _ := bed.Exec("edge", agentproc.Binary(t), "status", "--config", cfg)
	t.Logf("edgeagent status with the wrong password:\n%s", out)
	a.Kill()

	cfg = writeConfig(t, bed, dir, "edge-secret")
	a = startAgent(t, bed, cfg)
	poll.Until(t, 20*time.Second, "FRR session established with the right password", func() (bool, string) {
		n := a.Neighbor(frr)
		return n.State == "established", fmt.Sprintf("%+v", n)
	})
	poll.Until(t, 10*time.Second, "FRR to have the VIP", func() (bool, string) {
		out, ok := bed.FRRRoute("10.200.0.10/32")
		return ok, out
	})
}

// kill -9 the agent while the client loops requests: BIRD keeps the VIP
// (graceful restart) and never withdraws it; after the restart the session
// is Established in < 5 s.
func TestAgentKill9GracefulRestart(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{WithoutFRR: true})
	calico := bed.Env["CALICO1_IP"]
	cfg := writeConfig(t, bed, t.TempDir(), "")
	a := startAgent(t, bed, cfg)
	writeRoute(t, cfg, "web", "10.200.0.10", bed)
	poll.Until(t, 20*time.Second, "BIRD to have the VIP", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return ok, out
	})
	poll.Until(t, 10*time.Second, "curl from the client to the VIP", func() (bool, string) {
		out, err := bed.Exec("client", "curl", "-s", "--max-time", "2", "http://10.200.0.10/")
		return err == nil && strings.TrimSpace(out) == "pod1", out
	})

	stop := make(chan struct{})
	var missing, requests, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, ok := bed.BirdRoute(1, "10.200.0.10/32"); !ok {
				missing.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			requests.Add(1)
			out, err := bed.Exec("client", "curl", "-s", "--max-time", "2", "http://10.200.0.10/")
			if err != nil || strings.TrimSpace(out) != "pod1" {
				failed.Add(1)
			}
		}
	}()

	a.Kill()
	poll.Until(t, 10*time.Second, "BIRD to notice", func() (bool, string) {
		s := bed.BirdProtocolState(1, bed.EdgeProtocol())
		return !strings.Contains(s, "Established"), s
	})
	if !bed.BirdGRActive(1, bed.EdgeProtocol()) {
		t.Error("BIRD is not holding our routes as a graceful-restart helper")
	}
	restart := time.Now()
	startAgent(t, bed, cfg)
	// Graceful restart needs the session back before BIRD's restart time
	// (120 s) runs out; how fast is a benchmark figure
	// (docs/benchmarks/bgp.md), not an assertion here.
	poll.Until(t, 60*time.Second, "BIRD session re-established well within its restart time", func() (bool, string) {
		s := bed.BirdProtocolState(1, bed.EdgeProtocol())
		return strings.Contains(s, "Established"), s
	})
	took := time.Since(restart)
	t.Logf("Established %s after the restart (process start included)", took.Round(time.Millisecond))
	poll.Until(t, 10*time.Second, "BIRD to end the graceful restart (our End-of-RIB)", func() (bool, string) {
		return !bed.BirdGRActive(1, bed.EdgeProtocol()), ""
	})
	t.Logf("graceful restart over %s after the restart", time.Since(restart).Round(time.Millisecond))
	if _, ok := bed.BirdRoute(1, "10.200.0.10/32"); !ok {
		t.Error("BIRD lost the VIP when the graceful restart ended")
	}
	close(stop)
	wg.Wait()
	if n := missing.Load(); n > 0 {
		t.Errorf("BIRD lacked the VIP in %d polls (withdrawn during the restart)", n)
	}
	t.Logf("%d requests, %d failed", requests.Load(), failed.Load())
	if failed.Load() > 0 || requests.Load() == 0 {
		t.Errorf("%d of %d requests failed across the restart", failed.Load(), requests.Load())
	}
	if out := edgeRoutes(bed); !strings.Contains(out, "10.244.1.0/24 via "+calico) {
		t.Errorf("learned route after restart:\n%s", out)
	}
}

// SIGTERM keeps the VIP at the peers (graceful restart, rolling upgrade);
// with --withdraw-on-exit the VIP is withdrawn before the agent exits.
func TestAgentSIGTERM(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{WithoutFRR: true})
	cfg := writeConfig(t, bed, t.TempDir(), "")
	writeRoute(t, cfg, "web", "10.200.0.10", bed)

	term := func(a *agentproc.Agent) {
		t.Helper()
		if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.Done:
		case <-time.After(15 * time.Second):
			t.Fatal("agent did not exit on SIGTERM")
		}
		if code := a.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM", code)
		}
	}
	inBird := func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return ok, out
	}

	a := startAgent(t, bed, cfg)
	poll.Until(t, 20*time.Second, "BIRD to have the VIP", inBird)
	term(a)
	poll.Until(t, 10*time.Second, "BIRD to notice", func() (bool, string) {
		s := bed.BirdProtocolState(1, bed.EdgeProtocol())
		return !strings.Contains(s, "Established"), s
	})
	if out, ok := bed.BirdRoute(1, "10.200.0.10/32"); !ok {
		t.Fatalf("SIGTERM withdrew the VIP (want graceful restart):\n%s", out)
	}

	a = startAgent(t, bed, cfg, "--withdraw-on-exit")
	poll.Until(t, 20*time.Second, "the agent's session back", func() (bool, string) {
		n := a.Neighbor(bed.Env["CALICO1_IP"])
		return n.State == "established" && n.Advertised == 1, fmt.Sprintf("%+v", n)
	})
	poll.Until(t, 20*time.Second, "BIRD to have the VIP again", inBird)
	term(a)
	// BIRD reads the withdrawal asynchronously; with graceful restart it
	// would keep the VIP for 120 s, so a few seconds tell the two apart.
	poll.Until(t, 3*time.Second, "BIRD to drop the VIP after --withdraw-on-exit", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return !ok, out
	})
}
