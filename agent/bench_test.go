package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/internal/lbrgen"
	"github.com/arraynetworks/edgeagent/kubestatus"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/arraynetworks/edgeagent/watcher"
)

// BenchmarkReconcileOneChange is the agent's own part of a single change
// among N routes: the snapshot, translation, the prober's marking, the
// announcement set and the per-route reports, with the kernel and the
// apiserver behind fakes that keep only the last state (their costs are
// measured in dataplane's and kubestatus's benchmarks and by
// hack/bench/lbrscale.sh). Each iteration replaces one route by a copy
// with one more real, as an informer does on an update.
//
//	go test -run '^$' -bench ReconcileOneChange -benchmem ./agent
func BenchmarkReconcileOneChange(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			gen := lbrgen.Options{Routes: n}
			routes := make([]*v1alpha1.LBRoute, n)
			for i := range routes {
				routes[i] = gen.Route(i)
				routes[i].ResourceVersion = "1"
			}
			src := &benchSource{routes: routes}
			cfg := &config.Config{NodeName: "n1", VIPPools: []config.VIPPool{{CIDR: "10.200.0.0/16"}}}
			cfg.ApplyDefaults()
			a := New(Options{
				Config: cfg, Source: src, Dataplane: &lastDataplane{}, Reporter: discardReporter{},
				Prober: healthcheck.New(healthcheck.Options{}),
			})
			ctx := context.Background()
			if err := a.Reconcile(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				src.change(i % n)
				if err := a.Reconcile(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchSource serves a fixed list of routes, one of them replaced per change.
type benchSource struct {
	mu     sync.Mutex
	routes []*v1alpha1.LBRoute
	rv     int
}

func (s *benchSource) Run(ctx context.Context, changed func()) error { <-ctx.Done(); return nil }
func (s *benchSource) Synced() bool                                  { return true }
func (s *benchSource) Snapshot() watcher.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return watcher.Snapshot{Routes: append([]*v1alpha1.LBRoute(nil), s.routes...)}
}

func (s *benchSource) change(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rv++
	rt := s.routes[i].DeepCopy()
	rt.ResourceVersion = fmt.Sprint(s.rv + 1)
	rt.Generation++
	rt.Spec.RealServers = append(rt.Spec.RealServers[:4:4], v1alpha1.RealServer{IP: fmt.Sprintf("10.245.%d.%d", s.rv/250%250, 1+s.rv%250)})
	s.routes[i] = rt
}

// lastDataplane programs everything it is given and keeps nothing else.
type lastDataplane struct{ prog map[string]bool }

func (d *lastDataplane) Reconcile(_ context.Context, s model.State) error {
	if d.prog == nil {
		d.prog = make(map[string]bool, len(s.Services))
	}
	for i := range s.Services {
		d.prog[s.Services[i].Key()] = true
	}
	return nil
}
func (d *lastDataplane) Programmed() map[string]bool { return d.prog }
func (d *lastDataplane) Rejected() map[string]error  { return nil }
func (d *lastDataplane) Status() dataplane.Status    { return dataplane.Status{} }

type discardReporter struct{}

func (discardReporter) ReportRoutes(context.Context, []kubestatus.RouteReport) {}
func (discardReporter) ReportNeighbors(context.Context, []status.Neighbor)     {}
