package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/internal/poll"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/watcher"
)

// deadEngineProber is a Prober whose engine cannot start: as
// healthcheck.Prober does, Run records the failure, wakes the agent and
// waits; every real keeps being presumed healthy.
type deadEngineProber struct {
	mu     sync.Mutex
	engine healthcheck.EngineStatus
}

func (p *deadEngineProber) Run(ctx context.Context, changed func()) {
	p.mu.Lock()
	p.engine = healthcheck.EngineStatus{Error: "start health-check engine: epoll_create1: too many open files", Since: time.Now()}
	p.mu.Unlock()
	changed()
	<-ctx.Done()
}
func (p *deadEngineProber) Apply(s model.State) model.State                   { return s }
func (p *deadEngineProber) RealStatus(string, model.Real) (string, time.Time) { return "", time.Time{} }
func (p *deadEngineProber) Engine() healthcheck.EngineStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.engine
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) record(typ, reason, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, typ+" "+reason+": "+msg)
}

func (l *eventLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// A health-check engine that cannot start does not fail open silently:
// the running agent reports it in /status (healthCheck, degraded), turns
// not ready, records one Warning Event on its Node, and goes on
// programming its virtual services.
func TestHealthEngineFailureIsReported(t *testing.T) {
	src := &fakeSource{synced: true, snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{route("a", "10.200.0.1", 80)}}}
	dp := &fakeDataplane{}
	var ev eventLog
	a := New(Options{Config: testConfig(), Source: src, Dataplane: dp, Prober: &deadEngineProber{}, NodeEvent: ev.record})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	poll.Until(t, 10*time.Second, "the agent to report the dead health-check engine", func() (bool, string) {
		st := a.Status()
		return st.HealthCheck != nil && st.HealthCheck.Error != "" && len(ev.list()) > 0,
			fmt.Sprintf("healthCheck %+v, events %q", st.HealthCheck, ev.list())
	})
	st := a.Status()
	if st.Ready {
		t.Error("ready although no real is probed")
	}
	if st.HealthCheck.Running || !strings.Contains(st.HealthCheck.Error, "too many open files") || st.HealthCheck.Since.IsZero() {
		t.Errorf("healthCheck = %+v, want not running, the cause and since when", st.HealthCheck)
	}
	if len(st.Degraded) != 1 || !strings.Contains(st.Degraded[0], "health checks not running") || !strings.Contains(st.Degraded[0], "too many open files") {
		t.Errorf("degraded = %q, want the health-check engine and its cause", st.Degraded)
	}
	// The rest keeps working: the virtual service is programmed.
	if len(st.VirtualServices) != 1 || !st.VirtualServices[0].Programmed {
		t.Errorf("virtual services %+v, want the one route programmed all the same", st.VirtualServices)
	}
	// One event, however many reconciles see the failure.
	for range 3 {
		a.Trigger()
	}
	poll.Until(t, 5*time.Second, "three more reconciles", func() (bool, string) {
		return dp.count() >= 3, fmt.Sprintf("%d dataplane reconciles", dp.count())
	})
	if got := ev.list(); len(got) != 1 || !strings.HasPrefix(got[0], "Warning HealthCheckEngineFailed: ") || !strings.Contains(got[0], "too many open files") {
		t.Errorf("node events %q, want one Warning HealthCheckEngineFailed with the cause", got)
	}
}

// A running engine adds nothing to degraded and keeps the agent ready.
func TestHealthEngineRunningIsReady(t *testing.T) {
	src := &fakeSource{synced: true, snap: watcher.Snapshot{Routes: []*v1alpha1.LBRoute{route("a", "10.200.0.1", 80)}}}
	pr := &switchProber{healthy: true, ready: make(chan struct{})}
	a := New(Options{Config: testConfig(), Source: src, Dataplane: &fakeDataplane{}, Prober: pr})
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := a.Status()
	if !st.Ready || len(st.Degraded) != 0 || st.HealthCheck == nil || !st.HealthCheck.Running {
		t.Errorf("ready %v, degraded %q, healthCheck %+v: want ready, nothing degraded, the engine running", st.Ready, st.Degraded, st.HealthCheck)
	}
}
