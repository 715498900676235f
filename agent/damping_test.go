package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/bgp"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/watcher"
	"sigs.k8s.io/yaml"
)

// These tests drive the agent loop with fakes around it to check how health
// verdicts reach the announcement: withdraw when no real is healthy, come
// back on recovery, and no more than one change per hold time, with the
// agent itself coming back when a held change becomes due. The real prober,
// kernel and BIRD are exercised by the healthcheck and namespace tests.

type staticSource struct{ routes []*v1alpha1.LBRoute }

func (s *staticSource) Run(ctx context.Context, changed func()) error {
	changed()
	<-ctx.Done()
	return nil
}
func (s *staticSource) Snapshot() watcher.Snapshot { return watcher.Snapshot{Routes: s.routes} }
func (s *staticSource) Synced() bool               { return true }

// switchProber marks every real healthy or not, as told.
type switchProber struct {
	mu      sync.Mutex
	healthy bool
	changed func()
	ready   chan struct{}
}

func (p *switchProber) Run(ctx context.Context, changed func()) {
	p.mu.Lock()
	p.changed = changed
	p.mu.Unlock()
	close(p.ready)
	<-ctx.Done()
}

func (p *switchProber) Apply(s model.State) model.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range s.Services {
		for j := range s.Services[i].Reals {
			s.Services[i].Reals[j].Healthy = p.healthy
		}
	}
	return s
}

func (p *switchProber) RealStatus(string, model.Real) (string, time.Time) { return "", time.Time{} }

func (p *switchProber) Engine() healthcheck.EngineStatus {
	return healthcheck.EngineStatus{Running: true}
}

func (p *switchProber) set(healthy bool) {
	p.mu.Lock()
	p.healthy = healthy
	changed := p.changed
	p.mu.Unlock()
	changed()
}

// recordingSpeaker keeps the time of every change of its announced set.
type recordingSpeaker struct {
	mu      sync.Mutex
	current []string
	changes []announcement
}

type announcement struct {
	at     time.Time
	routes []string
}

func (s *recordingSpeaker) Announce(_ context.Context, routes []model.VIPRoute) error {
	var names []string
	for _, r := range routes {
		names = append(names, r.Prefix.String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Equal(names, s.current) {
		s.current = names
		s.changes = append(s.changes, announcement{time.Now(), names})
	}
	return nil
}

func (s *recordingSpeaker) announced() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

func (s *recordingSpeaker) history() []announcement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.changes)
}

func (s *recordingSpeaker) Advertised() map[string]bool { return nil }
func (s *recordingSpeaker) Neighbors() []bgp.Neighbor   { return nil }
func (s *recordingSpeaker) Learned() []bgp.LearnedRoute { return nil }

func startDampedAgent(t *testing.T, hold time.Duration) (*switchProber, *recordingSpeaker) {
	t.Helper()
	var rt v1alpha1.LBRoute
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: web, namespace: shop}
spec:
  vsIP: 10.200.0.10
  ports: [{port: 80}]
  realServers: [{ip: 10.244.1.10}]
`), &rt); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte("vipPools: [{cidr: 10.200.0.0/24}]\nsource: {dir: /nonexistent}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.HealthCheck.HoldTime.Duration = hold
	pr := &switchProber{healthy: true, ready: make(chan struct{})}
	sp := &recordingSpeaker{}
	a := New(Options{Config: cfg, Source: &staticSource{routes: []*v1alpha1.LBRoute{&rt}}, Prober: pr, Speaker: sp, NoStartupGrace: true,
		Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-pr.ready
	fast.Until(t, time.Second, "VIP announced at start", func() (bool, string) {
		a := sp.announced()
		return slices.Equal(a, []string{"10.200.0.10/32"}), fmt.Sprintf("announced %v", a)
	})
	return pr, sp
}

// fast polls every 2 ms: the tests measure when the route moved.
var fast = poll.Every(2 * time.Millisecond)

// announcedN holds when sp announces n routes.
func announcedN(sp *recordingSpeaker, n int) func() (bool, string) {
	return func() (bool, string) {
		a := sp.announced()
		return len(a) == n, fmt.Sprintf("announced %v", a)
	}
}

func TestAgentWithdrawsAndReturnsVIPAfterHold(t *testing.T) {
	const hold = 400 * time.Millisecond
	pr, sp := startDampedAgent(t, hold)

	pr.set(false)
	fast.Until(t, 200*time.Millisecond, "withdrawn when its only real is down", announcedN(sp, 0))
	withdrawn := time.Now()

	pr.set(true) // back at once: held until a hold time after the withdrawal
	fast.Until(t, hold+time.Second, "re-announced after the hold, with no other trigger", announcedN(sp, 1))
	if took := time.Since(withdrawn); took < hold-50*time.Millisecond {
		t.Fatalf("re-announced %v after the withdrawal, hold is %v", took, hold)
	}
}

func TestAgentFlappingRealMovesRouteOncePerHold(t *testing.T) {
	const hold = 300 * time.Millisecond
	pr, sp := startDampedAgent(t, hold)
	start := len(sp.history())
	began := time.Now()
	for i := range 100 { // flaps every 15 ms for 1.5 s (longer on a loaded machine)
		pr.set(i%2 == 1)
		time.Sleep(15 * time.Millisecond)
	}
	pr.set(true)
	flapped := time.Since(began)
	fast.Until(t, 2*hold, "announced once the flapping stops", announcedN(sp, 1))
	h := sp.history()[start-1:]
	t.Logf("%d route changes during the flapping", len(h)-1)
	if len(h) < 3 {
		t.Fatalf("%d route changes during 1.5 s of flapping, want some (health still moves the route, slower)", len(h)-1)
	}
	for i := 2; i < len(h); i++ {
		// The first change after start is immediate; each later one waits
		// a hold after the one before (small slack for the timer).
		if gap := h[i].at.Sub(h[i-1].at); gap < hold-20*time.Millisecond {
			t.Fatalf("route changes %v apart (%v then %v), hold is %v", gap, h[i-1].routes, h[i].routes, hold)
		}
	}
	// Bounded by how long the flapping really lasted, not by the 1.5 s the
	// loop takes on an idle machine.
	if n, most := len(h)-1, int(flapped/hold)+2; n > most {
		t.Fatalf("%d route changes in %v of flapping, want at most %d", n, flapped, most)
	}
}
