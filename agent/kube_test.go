package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/prometheus/client_golang/prometheus"
)

// With source.dir empty the agent runs on the Kubernetes source: it sees
// LBRoutes, writes their status, and reports the apiserver connection.
func TestFromConfigKubernetes(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`nodeName: edge-1
source: {kubeconfig: %s}
vipPools: [{cidr: 10.200.0.0/24}]
bgp: {enabled: false}
kubernetes: {namespace: default, neighborStatus: false}
`, s.Kubeconfig)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := FromConfig(ctx, cfg, slog.Default(), prometheus.NewRegistry(), WithNetns(testns.New(t, "agent").Name))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	route := `{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"web","namespace":"default"},
"spec":{"vsIP":"10.200.0.10","ports":[{"port":80}],"realServers":[{"ip":"10.244.1.10"}]}}`
	f := filepath.Join(dir, "route.json")
	if err := os.WriteFile(f, []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Kubectl(ctx, "apply", "-f", f); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the LBRoute served and Accepted", func() (bool, string) {
		st := b.Agent.Status()
		out, _ := s.Kubectl(ctx, "get", "lbr", "web", "-o", `jsonpath={.status.conditions[?(@.type=="Accepted")].status} {.status.nodes[0].node} {.status.vsName}`)
		return st.Mode == "kubernetes" && len(st.VirtualServices) == 1 && st.APIServer.Connected && strings.TrimSpace(out) == "True edge-1 default-web",
			fmt.Sprintf("agent status %+v; LBRoute status %q", st.APIServer, out)
	})
}
