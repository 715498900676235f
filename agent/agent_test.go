package agent

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/arraynetworks/edgeagent/watcher"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The components here are fakes: this tests the agent's own logic (order,
// gating, status assembly), not the kernel or BGP.

type fakeSource struct {
	synced bool
	snap   watcher.Snapshot
}

func (f *fakeSource) Run(ctx context.Context, changed func()) error {
	changed()
	<-ctx.Done()
	return nil
}
func (f *fakeSource) Snapshot() watcher.Snapshot { return f.snap }
func (f *fakeSource) Synced() bool               { return f.synced }

type fakeDataplane struct {
	mu     sync.Mutex
	calls  int
	fail   error
	states []model.State
	prog   map[string]bool
}

func (f *fakeDataplane) Reconcile(_ context.Context, s model.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.states = append(f.states, s)
	if f.fail != nil {
		return f.fail
	}
	f.prog = map[string]bool{}
	for _, vs := range s.Services {
		if vs.Port != 9999 { // pretend this one failed to program
			f.prog[vs.Key()] = true
		}
	}
	return nil
}
func (f *fakeDataplane) Programmed() map[string]bool { f.mu.Lock(); defer f.mu.Unlock(); return f.prog }
func (f *fakeDataplane) Rejected() map[string]error  { return nil }
func (f *fakeDataplane) Status() *status.Dataplane   { return &status.Dataplane{Interface: "edge-vip0"} }

type fakeSpeaker struct{ announced []string }

func (f *fakeSpeaker) Announce(_ context.Context, rs []model.VIPRoute) error {
	f.announced = nil
	for _, r := range rs {
		f.announced = append(f.announced, r.Prefix.String())
	}
	return nil
}
func (f *fakeSpeaker) Advertised() map[string]bool {
	m := map[string]bool{}
	for _, p := range f.announced {
		m[p] = true
	}
	return m
}
func (f *fakeSpeaker) Neighbors() []status.Neighbor   { return nil }
func (f *fakeSpeaker) Learned() []status.LearnedRoute { return nil }

func route(name, vip string, port int32) *v1alpha1.LBRoute {
	return &v1alpha1.LBRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1alpha1.LBRouteSpec{
			VSIP:        vip,
			Ports:       []v1alpha1.LBRoutePort{{Port: port}},
			RealServers: []v1alpha1.RealServer{{IP: "10.244.1.10"}},
		},
	}
}

func testConfig() *config.Config {
	c := &config.Config{NodeName: "n1", VIPPools: []config.VIPPool{{CIDR: "10.200.0.0/24"}}}
	c.ApplyDefaults()
	return c
}

func TestReconcileWaitsForSync(t *testing.T) {
	src := &fakeSource{snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{route("a", "10.200.0.1", 80)}}}
	dp := &fakeDataplane{}
	a := New(Options{Config: testConfig(), Source: src, Dataplane: dp})
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if dp.calls != 0 {
		t.Fatal("reconciled before the source synced: a restart could flush live state")
	}
	if st := a.Status(); st.Ready {
		t.Fatal("ready before the first sync")
	}
}

func TestAnnounceOnlyProgrammedVIPs(t *testing.T) {
	src := &fakeSource{synced: true, snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{
		route("a", "10.200.0.1", 80),
		route("b", "10.200.0.2", 9999), // the dataplane fails to program it
		route("c", "10.99.0.1", 80),    // outside the pools: refused
	}}}
	dp, sp := &fakeDataplane{}, &fakeSpeaker{}
	a := New(Options{Config: testConfig(), Source: src, Dataplane: dp, Speaker: sp})
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sp.announced, []string{"10.200.0.1/32"}) {
		t.Fatalf("announced %v, want only the programmed VIP", sp.announced)
	}
	st := a.Status()
	if len(st.VirtualServices) != 2 || !st.VirtualServices[0].Programmed || !st.VirtualServices[0].Advertised || st.VirtualServices[1].Advertised {
		t.Fatalf("status services: %+v", st.VirtualServices)
	}
	var refused []string
	for _, r := range st.LBRoutes {
		if !r.Accepted {
			refused = append(refused, r.Key+":"+r.Reason)
		}
	}
	if !slices.Equal(refused, []string{"default/c:VIPNotAllowed"}) {
		t.Fatalf("refused %v", refused)
	}
}

func TestReconcileErrorIsReportedAndRetried(t *testing.T) {
	src := &fakeSource{synced: true, snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{route("a", "10.200.0.1", 80)}}}
	dp := &fakeDataplane{fail: errors.New("iptables-restore: exit status 1")}
	a := New(Options{Config: testConfig(), Source: src, Dataplane: dp})
	err := a.Reconcile(context.Background())
	if err == nil {
		t.Fatal("dataplane error swallowed")
	}
	st := a.Status()
	if len(st.Degraded) != 1 || st.Degraded[0] != "dataplane: iptables-restore: exit status 1" {
		t.Fatalf("degraded %v", st.Degraded)
	}
	dp.mu.Lock()
	dp.fail = nil
	dp.mu.Unlock()
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); len(st.Degraded) != 0 {
		t.Fatalf("degraded after recovery: %v", st.Degraded)
	}
}

// Built.Run stops everything when one loop fails for good and reports that
// failure; a plain cancellation is no error.
func TestBuiltRun(t *testing.T) {
	src := &fakeSource{synced: true}
	boom := errors.New("apv loop: boom")
	stopped := make(chan struct{})
	b := &Built{
		Agent: New(Options{Config: testConfig(), Source: src}),
		Loops: []func(context.Context) error{
			func(ctx context.Context) error { <-ctx.Done(); close(stopped); return ctx.Err() },
			func(context.Context) error { return boom },
		},
	}
	if err := b.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the failing loop's error", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the other loop was not stopped before Run returned")
	}

	b.Loops = b.Loops[:1]
	stopped = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Run(ctx); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}
