package watcher

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/prometheus/client_golang/prometheus"
)

// With the apiserver gone the source keeps its last snapshot (nothing is
// withdrawn because the apiserver is unreachable) and the connection
// monitor reports the view stale, which makes /readyz degraded.
func TestApiserverOutageKeepsSnapshot(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	route := `{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"web","namespace":"default"},
"spec":{"vsIP":"10.200.0.10","ports":[{"port":80}],"realServers":[{"ip":"10.244.1.10"}]}}`
	f := filepath.Join(t.TempDir(), "route.json")
	if err := os.WriteFile(f, []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Kubectl(ctx, "apply", "-f", f); err != nil {
		t.Fatal(err)
	}
	mon := healthcheck.NewAPIServerMonitor(prometheus.NewRegistry(), healthcheck.APIServerOptions{
		ReadIdleTimeout: time.Second, PingTimeout: time.Second, StaleAfter: 2 * time.Second,
	})
	cfg, err := mon.Configure(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{}
	k, _ := e.startKube(t, KubeOptions{Config: cfg, NodeName: "edge-1", Observer: mon})
	eventually(t, 10*time.Second, func() error {
		if n := len(k.Snapshot().Routes); n != 1 {
			return fmt.Errorf("%d routes", n)
		}
		if !mon.Status().Connected || mon.Degraded() != "" {
			return fmt.Errorf("monitor: %+v %q", mon.Status(), mon.Degraded())
		}
		return nil
	})

	s.Stop()
	eventually(t, 20*time.Second, func() error {
		if st := mon.Status(); st.Connected || mon.Degraded() == "" {
			return fmt.Errorf("monitor still healthy: %+v", st)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	snap := k.Snapshot()
	if len(snap.Routes) != 1 || snap.Routes[0].Spec.VSIP != "10.200.0.10" {
		t.Errorf("snapshot changed during the outage: %+v", snap.Routes)
	}
	if !k.Synced() {
		t.Error("source reports not synced during the outage: the agent would stop reconciling")
	}
	t.Logf("degraded: %s", mon.Degraded())
}
