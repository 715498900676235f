package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/apv/apvemu"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/prometheus/client_golang/prometheus"
)

// The wiring: a config with apv.devices makes `run` drive the APV from the
// LBRoutes it reads (here: a standalone directory and an emulated APV).
func TestAPVWiring(t *testing.T) {
	dir := t.TempDir()
	emu := apvemu.New(t, "admin", "pw")
	ca, err := emu.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	routes := filepath.Join(dir, "routes")
	if err := os.MkdirAll(routes, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "user"), "admin\n")
	write(filepath.Join(dir, "pass"), "pw\n")
	write(filepath.Join(routes, "web.yaml"), `apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec:
  vsIP: 10.200.0.10
  ports: [{port: 80, protocol: TCP, targetPort: 8080}]
  realServers: [{ip: 10.244.1.10}, {ip: 10.244.2.10}]
`)
	// Credential and CA paths are relative to the config file.
	write(filepath.Join(dir, "agent.yaml"), fmt.Sprintf(`nodeName: edge-1
source: {dir: routes}
vipPools: [{cidr: 10.200.0.0/24}]
bgp: {enabled: false}
apv:
  devices:
  - {name: apv-a, url: %q, usernameFile: user, passwordFile: pass, caFile: %s}
  syncInterval: 1s
  scanInterval: 1h
`, emu.URL(), filepath.Base(ca)))
	cfg, err := config.Load(filepath.Join(dir, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	built, err := FromConfig(ctx, cfg, log, prometheus.NewRegistry(), WithNetns(testns.New(t, "agent").Name))
	if err != nil {
		t.Fatal(err)
	}
	if built.Agent.opts.Appliance == nil || len(built.Loops) == 0 {
		t.Fatal("apv.devices set but no appliance wired")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := built.Run(ctx); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := strings.Join(emu.Saved(), "\n")
		st := built.Agent.Status()
		if strings.Contains(lines, `"ea_rt_10.244.2.10_8080"`) && strings.Contains(lines, "slb policy default") &&
			len(st.APV) == 1 && st.APV[0].InSync {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("APV not programmed; device:\n%s\nstatus: %+v", lines, st.APV)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A failing device shows in degraded.
	emu.SetAuthFail(true)
	if err := built.Agent.opts.Appliance.(interface{ SyncOnce(context.Context) error }).SyncOnce(ctx); err == nil {
		t.Fatal("sync with refused credentials succeeded")
	}
	if d := built.Agent.Status().Degraded; !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, "apv apv-a: ") }) {
		t.Errorf("degraded = %v, want the failing APV", d)
	}
	cancel()
	wg.Wait()
}
