package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/bgp"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/model"
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
	st     dataplane.Status
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
func (f *fakeDataplane) Status() dataplane.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Interface = "edge-vip0"
	return st
}

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
func (f *fakeSpeaker) Neighbors() []bgp.Neighbor   { return nil }
func (f *fakeSpeaker) Learned() []bgp.LearnedRoute { return nil }

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

// A dataplane that keeps failing makes the agent not ready once the grace
// period is over (the kubelet's readiness probe sees it), and ready again
// when it recovers; a failure younger than the grace period only degrades.
func TestDataplaneFailureBeyondGraceIsNotReady(t *testing.T) {
	src := &fakeSource{synced: true, snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{route("a", "10.200.0.1", 80)}}}
	dp := &fakeDataplane{}
	cfg := testConfig()
	cfg.Dataplane.FailureGracePeriod.Duration = time.Minute
	var events []string
	a := New(Options{Config: cfg, Source: src, Dataplane: dp, NodeEvent: func(typ, reason, msg string) {
		events = append(events, typ+" "+reason)
	}})
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	fail := func(since time.Time) {
		dp.mu.Lock()
		dp.st.FailingSince = since
		dp.st.Failures = []dataplane.Failure{{Step: "sysctl", Err: errors.New("set sysctl net.ipv4.ip_forward=1 (it is 0): read-only file system"), Since: since}}
		dp.mu.Unlock()
	}
	fail(time.Now().Add(-30 * time.Second))
	if st := a.Status(); !st.Ready {
		t.Fatalf("not ready %v into a 1m grace period: %v", 30*time.Second, st.Degraded)
	}
	fail(time.Now().Add(-2 * time.Minute))
	for range 2 { // one event, however many syncs see it
		if err := a.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	st := a.Status()
	if st.Ready {
		t.Fatal("ready although the dataplane has failed for 2m (grace 1m)")
	}
	if len(st.Degraded) != 1 || !strings.Contains(st.Degraded[0], "dataplane failing for 2m0s") || !strings.Contains(st.Degraded[0], "sysctl: set sysctl net.ipv4.ip_forward=1") {
		t.Fatalf("degraded = %q, want the failing step and for how long", st.Degraded)
	}
	fail(time.Time{})
	dp.mu.Lock()
	dp.st.Failures = nil
	dp.mu.Unlock()
	if st := a.Status(); !st.Ready || len(st.Degraded) != 0 {
		t.Fatalf("after recovery: ready %v, degraded %v", st.Ready, st.Degraded)
	}
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(events, []string{"Warning DataplaneFailing", "Normal DataplaneRecovered"}) {
		t.Fatalf("Node events %v, want one DataplaneFailing then one DataplaneRecovered", events)
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

// The retry schedule after failed reconciles (Options.MinBackoff and
// MaxBackoff): 500ms, doubling to 30s, from 500ms again after a success.
func TestRetryBackoffSchedule(t *testing.T) {
	a := New(Options{Config: testConfig(), Source: &fakeSource{}})
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second}
	var got []time.Duration
	for range want {
		got = append(got, a.retryIn())
	}
	if !slices.Equal(got, want) {
		t.Errorf("retries after failures in a row: %v, want %v", got, want)
	}
	a.backoff.Reset(backoffKey)
	if d := a.retryIn(); d != 500*time.Millisecond {
		t.Errorf("first retry after a success: %v, want 500ms", d)
	}
}

// Run retries a failed reconcile by itself, backing off, until it succeeds.
func TestRunRetriesFailedReconcile(t *testing.T) {
	src := &fakeSource{synced: true, snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{route("a", "10.200.0.1", 80)}}}
	dp := &failingDataplane{fakeDataplane: &fakeDataplane{}, failures: 4}
	a := New(Options{Config: testConfig(), Source: src, Dataplane: dp, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	poll.Until(t, 10*time.Second, "a successful reconcile after four failures", func() (bool, string) {
		st := a.Status()
		return st.Ready && len(st.Degraded) == 0, fmt.Sprintf("calls %d, degraded %v", dp.count(), st.Degraded)
	})
	// Four retries waited 10, 20, 40 and 40 ms at least.
	if took := time.Since(start); took < 110*time.Millisecond {
		t.Errorf("five reconciles within %v: the retries did not back off", took)
	}
	if n := dp.count(); n != 5 {
		t.Errorf("%d dataplane reconciles, want 5 (four failures, one success)", n)
	}
}

// failingDataplane fails its first failures reconciles.
type failingDataplane struct {
	*fakeDataplane
	failures int
}

func (f *failingDataplane) Reconcile(ctx context.Context, s model.State) error {
	f.mu.Lock()
	fail := f.calls < f.failures
	if fail {
		f.calls++
	}
	f.mu.Unlock()
	if fail {
		return errors.New("iptables-restore: exit status 1")
	}
	return f.fakeDataplane.Reconcile(ctx, s)
}

func (f *fakeDataplane) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}
