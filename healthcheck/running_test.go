package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/model"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestEngineRunningGauge checks edgeagent_healthcheck_engine_running: 0
// before Run, 1 while it probes, 0 after it stopped, and 0 all along when
// the engine cannot start (the alert HealthCheckEngineNotRunning reads it).
func TestEngineRunningGauge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		fail    bool
		running float64
	}{
		{"engine starts", false, 1},
		{"engine cannot start", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			p := New(Options{Registerer: reg, Logger: quiet})
			if tc.fail {
				p.newEngine = func() (*engine, error) { return nil, errors.New("epoll_create: too many open files") }
			}
			if v := testutil.ToFloat64(p.running); v != 0 {
				t.Fatalf("before Run: engine_running %v, want 0", v)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			woken := make(chan struct{}, 1)
			changed := func() {
				select {
				case woken <- struct{}{}:
				default:
				}
			}
			go func() { p.Run(ctx, changed); close(done) }()
			if tc.fail {
				// Run wakes the agent at once, so /status and readiness
				// say so, and then waits for ctx.
				select {
				case <-woken:
				case <-time.After(5 * time.Second):
					t.Fatal("an engine that cannot start did not wake the agent (changed not called)")
				}
				es := p.Engine()
				if es.Running || !strings.Contains(es.Error, "too many open files") || es.Since.IsZero() {
					t.Errorf("Engine() = %+v, want not running, the cause and when", es)
				}
			} else {
				poll.Until(t, 2*time.Second, "engine_running 1", func() (bool, string) {
					v := testutil.ToFloat64(p.running)
					return v == 1, fmt.Sprint(v)
				})
				if es := p.Engine(); !es.Running || es.Error != "" {
					t.Errorf("Engine() = %+v while it probes, want running, no error", es)
				}
			}
			if v := testutil.ToFloat64(p.running); v != tc.running {
				t.Errorf("while Run runs: engine_running %v, want %v", v, tc.running)
			}
			cancel()
			<-done
			if v := testutil.ToFloat64(p.running); v != 0 {
				t.Errorf("after Run returned: engine_running %v, want 0", v)
			}
			if es := p.Engine(); es.Running {
				t.Errorf("after Run returned: Engine() = %+v, want not running", es)
			}
		})
	}
}

// TestTargetsGauge counts distinct probe targets: a real shared by two
// virtual services with the same check is one target; check type None
// adds none.
func TestTargetsGauge(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	p := New(Options{Registerer: reg, Logger: quiet})
	a1 := netip.MustParseAddrPort("10.244.0.1:80")
	a2 := netip.MustParseAddrPort("10.244.0.2:80")
	p.Apply(model.State{Services: []model.VirtualService{
		oneVS("web", model.DefaultHealth, a1, a2),
		oneVS("web2", model.DefaultHealth, a1),
		oneVS("none", model.HealthSpec{Type: model.HealthNone}, a2),
	}})
	want := func(n int) string {
		return fmt.Sprintf(`
# HELP edgeagent_healthcheck_targets Distinct probe targets (real endpoint and check) being probed; a real shared by virtual services with the same check is probed once.
# TYPE edgeagent_healthcheck_targets gauge
edgeagent_healthcheck_targets %d
`, n)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(2)), "edgeagent_healthcheck_targets"); err != nil {
		t.Error(err)
	}
	p.Apply(model.State{})
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(0)), "edgeagent_healthcheck_targets"); err != nil {
		t.Errorf("after the reals left: %v", err)
	}
}
