package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/apv"
	"github.com/arraynetworks/edgeagent/apv/apvemu"
	"github.com/arraynetworks/edgeagent/apv/cesink"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/internal/testns"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
)

// ceReceiver is a CloudEvents HTTP receiver from the CloudEvents Go SDK on
// a loopback port.
type ceReceiver struct {
	url string
	mu  sync.Mutex
	got []cloudevents.Event
}

func startCloudEventsReceiver(t *testing.T) *ceReceiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudevents.NewClientHTTP(cehttp.WithListener(l))
	if err != nil {
		t.Fatal(err)
	}
	r := &ceReceiver{url: "http://" + l.Addr().String() + "/"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.StartReceiver(ctx, func(e cloudevents.Event) {
			r.mu.Lock()
			r.got = append(r.got, e)
			r.mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *ceReceiver) events() []cloudevents.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

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
	emu.SetLink("port2", false) // a finding for the first scan
	rcv := startCloudEventsReceiver(t)
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
  events: {sinkURL: %q}
`, emu.URL(), filepath.Base(ca), rcv.url))
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
	poll.Until(t, 10*time.Second, "the APV programmed and in sync", func() (bool, string) {
		lines := strings.Join(emu.Saved(), "\n")
		st := built.Agent.Status()
		return strings.Contains(lines, `"ea_rt_10.244.2.10_8080"`) && strings.Contains(lines, "slb policy default") &&
			len(st.APV) == 1 && st.APV[0].InSync, fmt.Sprintf("device:\n%s\nstatus: %+v", lines, st.APV)
	})

	// The first scan's finding reached the CloudEvents receiver.
	var evs []cloudevents.Event
	poll.Until(t, 10*time.Second, "a LinkDown CloudEvent", func() (bool, string) {
		evs = rcv.events()
		return slices.ContainsFunc(evs, isLinkDown), fmt.Sprintf("received %d events; status %+v", len(evs), built.Agent.Status().APVEvents)
	})
	if e := evs[slices.IndexFunc(evs, isLinkDown)]; e.Type() != cesink.TypeBase || e.Source() != "/apv/apv-a" || e.Subject() != "port2" {
		t.Errorf("LinkDown CloudEvent: type %q source %q subject %q", e.Type(), e.Source(), e.Subject())
	}
	if ev := built.Agent.Status().APVEvents; ev == nil || ev.Delivered == 0 || ev.SinkURL != rcv.url {
		t.Errorf("status apvEvents = %+v", ev)
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

func isLinkDown(e cloudevents.Event) bool { return e.Extensions()["reason"] == apv.ReasonLinkDown }
