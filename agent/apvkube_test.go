package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/apv"
	"github.com/arraynetworks/edgeagent/apv/apvemu"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// In cluster mode every agent reads and scans the APV, but only the Lease
// holder writes to it; device state changes become Events on each agent's
// Node. Two agents (edge-a, edge-b) share one emulated APV, each with its own
// account so the emulator can tell their commands apart.
func TestAPVClusterLeaderWritesAndEvents(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	emu := apvemu.New(t, "unused", "unused")
	dir := t.TempDir()
	ca, err := emu.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	var running int
	done := make(chan struct{}, 16)
	defer func() {
		stop()
		for range running {
			<-done
		}
	}()
	agents := map[string]*Built{}
	for _, node := range []string{"edge-a", "edge-b"} {
		emu.AddUser(node, "pw-"+node)
		nd := filepath.Join(dir, node)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string]string{
			"user": node + "\n", "pass": "pw-" + node + "\n",
			"config.yaml": fmt.Sprintf(`nodeName: %s
source: {kubeconfig: %s}
vipPools: [{cidr: 10.200.0.0/24}]
bgp: {enabled: false}
kubernetes: {namespace: default, neighborStatus: false, autoLBRoute: false}
apv:
  devices:
  - {name: apv-a, url: %q, usernameFile: user, passwordFile: pass, caFile: %s}
  syncInterval: 1s
  scanInterval: 1s
`, node, s.Kubeconfig, emu.URL(), ca),
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(nd, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfg, err := config.Load(filepath.Join(nd, "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		b, err := FromConfig(ctx, cfg, log, prometheus.NewRegistry(), WithNetns(testns.New(t, "agent").Name))
		if err != nil {
			t.Fatal(err)
		}
		agents[node] = b
		running++
		go func() {
			if err := b.Run(runCtx); err != nil {
				t.Errorf("agent %s: %v", node, err)
			}
			done <- struct{}{}
		}()
	}

	route := `{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"web","namespace":"default"},
"spec":{"vsIP":"10.200.0.10","ports":[{"port":80,"targetPort":8080}],"realServers":[{"ip":"10.244.1.10"}]}}`
	f := filepath.Join(dir, "route.json")
	if err := os.WriteFile(f, []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Kubectl(ctx, "apply", "-f", f); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}

	// Both agents end up in sync with the device (the follower by reading
	// what the leader wrote) and the Lease names the leader.
	var leader, follower string
	poll.Until(t, 30*time.Second, "both agents in sync with the device and a Lease holder", poll.Reason(func() string {
		lease, err := cs.CoordinationV1().Leases("default").Get(ctx, watcher.LeaseName, metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil {
			return fmt.Sprintf("no lease holder yet (%v)", err)
		}
		leader = *lease.Spec.HolderIdentity
		for node, b := range agents {
			if st := b.Agent.Status().APV; len(st) != 1 || !st[0].InSync || st[0].HAState != "active" {
				return fmt.Sprintf("%s: apv status %+v", node, st)
			}
		}
		if !strings.Contains(strings.Join(emu.Saved(), "\n"), `"ea_rt_10.244.1.10_8080"`) {
			return "device not programmed"
		}
		return ""
	}))
	follower = map[string]string{"edge-a": "edge-b", "edge-b": "edge-a"}[leader]
	if follower == "" {
		t.Fatalf("lease holder %q is neither agent", leader)
	}

	// Drift on the device (a stray real in the agent's names): the leader
	// removes it, the follower only notices.
	if err := emu.Apply(`slb real tcp "ea_rt_192.0.2.99_80" 192.0.2.99 80 65535 none`); err != nil {
		t.Fatal(err)
	}
	before := len(emu.ConfigCommandsBy(leader))
	poll.Until(t, 20*time.Second, "the drift on the device repaired", func() (bool, string) {
		running := strings.Join(emu.Running(), "\n")
		return !strings.Contains(running, "192.0.2.99"), running
	})
	if len(emu.ConfigCommandsBy(leader)) == before {
		t.Fatal("the leader did not repair the drift")
	}
	if got := emu.ConfigCommandsBy(follower); len(got) != 0 {
		t.Fatalf("follower %s sent configuration commands: %q", follower, got)
	}

	// An HA failover on the device is an Event on each agent's Node.
	emu.SetHA("standby")
	for node := range agents {
		poll.Until(t, 20*time.Second, "an HAStateChanged Event on Node "+node, poll.Reason(func() string {
			evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{
				FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + node + ",reason=" + apv.ReasonHAStateChanged,
			})
			if err != nil {
				return err.Error()
			}
			for _, e := range evs.Items {
				if e.Type == apv.Warning && e.Annotations[DeviceAnnotation] == "apv-a" && strings.Contains(e.Message, "from active to standby") {
					return ""
				}
			}
			return fmt.Sprintf("no HAStateChanged event for node %s (%d events)", node, len(evs.Items))
		}))
	}
	if got := emu.ConfigCommandsBy(follower); len(got) != 0 {
		t.Fatalf("follower %s sent configuration commands: %q", follower, got)
	}
}
