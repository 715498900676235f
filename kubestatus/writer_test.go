package kubestatus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/internal/lbrgen"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func TestStatusRejectionsConditionsAndEvents(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t)
	e.createRoute(t, staticRoute(ns, "good", "10.200.0.20", "10.244.1.1"))
	time.Sleep(1100 * time.Millisecond) // creation timestamps have 1 s resolution: make "good" older
	e.createRoute(t, staticRoute(ns, "conflict", "10.200.0.20", "10.244.1.2"))
	e.createRoute(t, staticRoute(ns, "outside", "10.201.0.1", "10.244.1.3"))
	e.createRoute(t, serviceRoute(ns, "nosvc", "10.200.0.21", "missing"))

	a := e.startAgent(t, e.node(t, "edge"), true, Options{Advertises: true})
	a.waitRoutes(t, ns, 4)
	a.report(ns, nil)

	want := map[string][4]string{
		"good":     {"True/Accepted", "True/Programmed", "True/Advertised", "True/Ready"},
		"conflict": {"False/VIPConflict", "False/Rejected", "False/Rejected", "False/Rejected"},
		"outside":  {"False/VIPNotAllowed", "False/Rejected", "False/Rejected", "False/Rejected"},
		"nosvc":    {"True/Accepted", "True/Programmed", "True/Advertised", "False/NoEndpoints"},
	}
	eventually(t, 15*time.Second, func() error {
		for name, w := range want {
			rt := e.getRoute(t, ns, name)
			got := [4]string{condition(rt, ConditionAccepted), condition(rt, ConditionProgrammed), condition(rt, ConditionAdvertised), condition(rt, ConditionReady)}
			if got != w {
				return fmt.Errorf("%s: conditions %v, want %v", name, got, w)
			}
		}
		return nil
	})
	good := e.getRoute(t, ns, "good")
	if good.Status.VSName != ns+"-good" || good.Status.Ports != "80/TCP" || good.Status.RealServers != 1 ||
		good.Status.Group != ns+"-good" || good.Status.ObservedGeneration != good.Generation {
		t.Errorf("summary fields: %+v", good.Status)
	}
	if m := msg(good, ConditionProgrammed); m != "programmed on 1 of 1 nodes" {
		t.Errorf("Programmed message %q", m)
	}
	if len(good.Status.Nodes) != 0 {
		t.Errorf("a node serving the route fully is listed: %+v", good.Status.Nodes)
	}
	if msg := msg(e.getRoute(t, ns, "outside"), ConditionAccepted); !strings.Contains(msg, "spec.vsIP") || !strings.Contains(msg, "10.201.0.1") {
		t.Errorf("rejection message does not name the field and value: %q", msg)
	}
	// The Service-form route without a Service: the node says why it
	// does not serve it.
	if n := e.getRoute(t, ns, "nosvc").Status.Nodes; len(n) != 1 || n[0].Node != a.node || n[0].Message != "no reals" {
		t.Errorf("nosvc nodes: %+v", n)
	}

	wantEvents := map[string]string{"good": "Normal/Ready", "conflict": "Warning/VIPConflict", "outside": "Warning/VIPNotAllowed"}
	eventually(t, 15*time.Second, func() error {
		for name, w := range wantEvents {
			evs := e.events(t, ns, name)
			if !strings.Contains(strings.Join(evs, ","), w) {
				return fmt.Errorf("%s: events %v, want %s", name, evs, w)
			}
		}
		return nil
	})

	// Fixing the conflict flips the route to Accepted.
	e.updateRoute(t, ns, "conflict", func(rt *v1alpha1.LBRoute) { rt.Spec.VSIP = "10.200.0.22" })
	eventually(t, 10*time.Second, func() error {
		a.report(ns, nil)
		rt := e.getRoute(t, ns, "conflict")
		if c := condition(rt, ConditionAccepted); c != "True/Accepted" || rt.Status.ObservedGeneration != rt.Generation {
			return fmt.Errorf("conflict route: %s, observed generation %d of %d", c, rt.Status.ObservedGeneration, rt.Generation)
		}
		return nil
	})
}

// Two nodes, the leader folds both: counts in the conditions, the node
// that does not fully serve listed; each change written once.
func TestStatusTwoNodesFolded(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t)
	e.createRoute(t, staticRoute(ns, "shared", "10.200.0.30", "10.244.1.1", "10.244.1.2"))
	a := e.startAgent(t, e.node(t, "edge-a"), true, Options{Advertises: true})
	b := e.startAgent(t, e.node(t, "edge-b"), false, Options{Advertises: true})
	for _, x := range []*agentT{a, b} {
		x.waitRoutes(t, ns, 1)
	}
	a.report(ns, nil)
	b.report(ns, map[string]RouteReport{"shared": {Programmed: true, Advertised: false, Reals: 2, HealthyReals: 1}})

	eventually(t, 15*time.Second, func() error {
		rt := e.getRoute(t, ns, "shared")
		if m := msg(rt, ConditionAdvertised); m != "advertised by 1 of 2 nodes" {
			return fmt.Errorf("Advertised: %q", m)
		}
		if m := msg(rt, ConditionReady); m != "serving from 1 of 2 nodes" {
			return fmt.Errorf("Ready: %q", m)
		}
		if n := rt.Status.Nodes; len(n) != 1 || n[0].Node != b.node || n[0].Advertised || n[0].HealthyReals != 1 || n[0].Message != "not advertised" {
			return fmt.Errorf("nodes %+v", n)
		}
		return nil
	})
	leaderWrites := func() float64 { return counter(t, a.w, "leader") }
	settle(t, a.w, 1)
	w0 := leaderWrites()
	// b changes its view; the leader writes the route once.
	b.report(ns, map[string]RouteReport{"shared": {Programmed: false, Advertised: false, Reals: 2, HealthyReals: 0}})
	eventually(t, 10*time.Second, func() error {
		rt := e.getRoute(t, ns, "shared")
		if m := msg(rt, ConditionProgrammed); m != "programmed on 1 of 2 nodes" {
			return fmt.Errorf("Programmed: %q", m)
		}
		if n := rt.Status.Nodes; len(n) != 1 || n[0].Programmed || n[0].Message != "not programmed" {
			return fmt.Errorf("nodes %+v", n)
		}
		return nil
	})
	settle(t, a.w, 1)
	if got := leaderWrites() - w0; got != 1 {
		t.Errorf("one change on one node: the leader wrote the route %v times, want 1", got)
	}
	// b's writes: its report only (presence, first report, the change).
	if got := counter(t, b.w, "leader"); got != 0 {
		t.Errorf("the non-leader wrote %v LBRoute statuses", got)
	}
	if r := e.reports(t, b.node); len(r) != 1 || r[0].Slices != 1 || len(r[0].Routes) != 1 || r[0].Routes[0].Programmed {
		t.Errorf("b's report: %+v", r)
	}

	// b fixed and the route changed: written once when both nodes have
	// programmed the new generation, never with the old one counted.
	b.report(ns, nil)
	settle(t, a.w, 1)
	w1 := leaderWrites()
	e.updateRoute(t, ns, "shared", func(rt *v1alpha1.LBRoute) { rt.Spec.RealServers = rt.Spec.RealServers[:1] })
	eventually(t, 10*time.Second, func() error {
		if routesIn(a.k, ns) != 1 || routesIn(b.k, ns) != 1 {
			return fmt.Errorf("route gone")
		}
		for _, x := range []*agentT{a, b} {
			if rt := x.k.Snapshot().Routes; rt[len(rt)-1].Generation < 2 {
				return fmt.Errorf("%s has not seen generation 2", x.node)
			}
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	a.report(ns, nil)
	time.Sleep(300 * time.Millisecond)
	b.report(ns, nil)
	eventually(t, 10*time.Second, func() error {
		rt := e.getRoute(t, ns, "shared")
		if rt.Status.ObservedGeneration != rt.Generation || msg(rt, ConditionProgrammed) != "programmed on 2 of 2 nodes" || rt.Status.RealServers != 1 {
			return fmt.Errorf("status %+v", rt.Status)
		}
		return nil
	})
	settle(t, a.w, 1)
	if got := leaderWrites() - w1; got != 1 {
		t.Errorf("a spec change reported by two nodes 300 ms apart: %v leader writes, want 1", got)
	}
}

func counter(t *testing.T, w *Writer, kind string) float64 {
	t.Helper()
	m, err := w.writes.GetMetricWithLabelValues(kind)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.ToFloat64(m)
}

// A first report of 1,000 routes is 2 slices + 1,000 route statuses; a
// resync writes nothing, and neither does a restarted agent that finds its
// report in place.
func TestStatusNoWriteStormOnResync(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t)
	const n = 1000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			vip := fmt.Sprintf("10.200.%d.%d", 100+i/250, 1+i%250)
			e.createRoute(t, staticRoute(ns, fmt.Sprintf("r%04d", i), vip, "10.244.1.1"))
		}()
	}
	wg.Wait()

	node := e.node(t, "edge-storm")
	a := e.startAgent(t, node, true, Options{})
	a.waitRoutes(t, ns, n)
	start := time.Now()
	a.report(ns, nil)
	// 1,000 routes: two slices of a few hundred (plus the presence write,
	// which the agent made before its first report).
	first := settle(t, a.w, n+2)
	t.Logf("first report of %d routes: %d writes in %v", n, first, time.Since(start).Round(time.Millisecond))
	if got := counter(t, a.w, "leader"); got != n {
		t.Errorf("first report: %v LBRoute status writes, want %d (one per route)", got, n)
	}
	if got := counter(t, a.w, "node"); got > 3 {
		t.Errorf("first report: %v report writes, want at most 3 (presence + 2 slices)", got)
	}
	for range 3 {
		a.report(ns, nil)
	}
	time.Sleep(2 * time.Second)
	if got := a.w.Writes() - first; got != 0 {
		t.Errorf("resync of %d unchanged routes made %d writes, want 0", n, got)
	}
	a.stop()

	// A restarted agent (fresh writer, same node) finds everything in place.
	b := e.startAgent(t, node, true, Options{})
	b.waitRoutes(t, ns, n)
	b.report(ns, nil)
	time.Sleep(4 * time.Second)
	if got := b.w.Writes(); got != 0 {
		t.Errorf("restarted agent made %d writes for unchanged status, want 0", got)
	}
}

// A node that leaves the cluster (its Node deleted) is pruned from every
// status it appeared in, and its reports are deleted.
func TestStatusNodeLeavesIsPruned(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t)
	e.createRoute(t, staticRoute(ns, "r", "10.200.0.40", "10.244.1.1"))
	a := e.startAgent(t, e.node(t, "edge-a"), true, Options{})
	bNode := e.node(t, "edge-b")
	b := e.startAgent(t, bNode, false, Options{})
	a.waitRoutes(t, ns, 1)
	b.waitRoutes(t, ns, 1)
	a.report(ns, nil)
	b.report(ns, map[string]RouteReport{"r": {Programmed: false, Reals: 1}})
	eventually(t, 15*time.Second, func() error {
		rt := e.getRoute(t, ns, "r")
		if m := msg(rt, ConditionProgrammed); m != "programmed on 1 of 2 nodes" || len(rt.Status.Nodes) != 1 {
			return fmt.Errorf("Programmed %q, nodes %+v", m, rt.Status.Nodes)
		}
		return nil
	})
	if r := e.reports(t, bNode); len(r) != 1 || len(r[0].OwnerReferences) != 1 || r[0].OwnerReferences[0].Kind != "Node" {
		t.Fatalf("b's report is not owned by its Node: %+v", r)
	}
	b.stop()
	if err := e.admin.CoreV1().Nodes().Delete(ctxT(t), bNode, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		rt := e.getRoute(t, ns, "r")
		if m := msg(rt, ConditionProgrammed); m != "programmed on 1 of 1 nodes" || len(rt.Status.Nodes) != 0 {
			return fmt.Errorf("Programmed %q, nodes %+v", m, rt.Status.Nodes)
		}
		if r := e.reports(t, bNode); len(r) != 0 {
			return fmt.Errorf("b's reports still there: %d", len(r))
		}
		return nil
	})
}

// A node's report is resliced as its routes grow, and the slices no longer
// used are deleted.
func TestStatusReportReslices(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t)
	node := e.node(t, "edge-slices")
	a := e.startAgent(t, node, false, Options{})
	mk := func(n int) []RouteReport {
		var out []RouteReport
		for i := range n {
			out = append(out, reportOf3(ns, fmt.Sprintf("r%04d", i)))
		}
		return out
	}
	check := func(routes int, slices int32) {
		t.Helper()
		eventually(t, 20*time.Second, func() error {
			rs := e.reports(t, node)
			total := 0
			for _, r := range rs {
				if r.Slices != slices {
					return fmt.Errorf("%s: %d slices, want %d", r.Name, r.Slices, slices)
				}
				total += len(r.Routes)
				for _, x := range r.Routes {
					if SliceOf(x.Namespace+"/"+x.Name, slices) != r.Slice {
						return fmt.Errorf("%s/%s in slice %d", x.Namespace, x.Name, r.Slice)
					}
				}
			}
			if len(rs) != int(slices) || total != routes {
				return fmt.Errorf("%d objects with %d routes, want %d with %d", len(rs), total, slices, routes)
			}
			return nil
		})
	}
	a.w.ReportRoutes(context.Background(), mk(300))
	check(300, 1)
	a.w.ReportRoutes(context.Background(), mk(1200))
	check(1200, 4)
	a.w.ReportRoutes(context.Background(), mk(100))
	check(100, 1)
}

func reportOf3(ns, name string) RouteReport {
	var r RouteReport
	r.Result.Namespace, r.Result.Name, r.Result.Generation, r.Result.Accepted = ns, name, 1, true
	r.Programmed, r.Reals, r.HealthyReals = true, 3, 3
	return r
}

// Entries of status.nodes written by agents of the previous release (each
// node its own entry, server-side applied): kept for nodes that still run
// it, dropped once the node reports the new way.
func TestStatusLegacyNodeEntries(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t)
	e.createRoute(t, staticRoute(ns, "r", "10.200.0.50", "10.244.1.1"))
	old := e.node(t, "edge-old")
	legacy := fmt.Sprintf(`{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"r","namespace":%q},"status":{"nodes":[{"node":%q,"programmed":true,"advertised":true,"reals":1,"healthyReals":1}]}}`, ns, old)
	if _, err := e.dyn.Resource(reportResourceLBRoute).Namespace(ns).Patch(ctxT(t), "r", types.ApplyPatchType, []byte(legacy),
		metav1.PatchOptions{FieldManager: NodeFieldManager(old), Force: new(true)}, "status"); err != nil {
		t.Fatal(err)
	}
	a := e.startAgent(t, e.node(t, "edge-new"), true, Options{})
	a.waitRoutes(t, ns, 1)
	a.report(ns, nil)
	eventually(t, 15*time.Second, func() error {
		rt := e.getRoute(t, ns, "r")
		if m := msg(rt, ConditionProgrammed); m != "programmed on 1 of 1 nodes" {
			return fmt.Errorf("Programmed %q", m)
		}
		if n := rt.Status.Nodes; len(n) != 1 || n[0].Node != old || !n[0].Programmed {
			return fmt.Errorf("the old agent's entry was not kept: %+v", n)
		}
		return nil
	})
	// The old node upgrades: it reports the new way, and its old entry goes.
	b := e.startAgent(t, old, false, Options{})
	b.waitRoutes(t, ns, 1)
	b.report(ns, nil)
	eventually(t, 15*time.Second, func() error {
		rt := e.getRoute(t, ns, "r")
		if m := msg(rt, ConditionProgrammed); m != "programmed on 2 of 2 nodes" || len(rt.Status.Nodes) != 0 {
			return fmt.Errorf("Programmed %q, nodes %+v", m, rt.Status.Nodes)
		}
		return nil
	})
}

var reportResourceLBRoute = v1alpha1.GroupVersion.WithResource("lbroutes")

func TestEdgeNodeStatus(t *testing.T) {
	e := setup(t)
	node := e.node(t, "edge-ens")
	a := e.startAgent(t, node, false, Options{NeighborStatus: true, NeighborInterval: time.Hour})
	t.Cleanup(func() {
		_ = e.dyn.Resource(v1alpha1.GroupVersion.WithResource("edgenodestatuses")).Delete(context.Background(), node, metav1.DeleteOptions{})
	})
	nb := []status.Neighbor{
		{Address: "10.99.0.11", ASN: 64512, State: "established", UptimeSeconds: 100, Received: 3, Source: "config"},
		{Address: "10.99.0.12", ASN: 64512, State: "active", LastError: "connection refused", Source: "node/calico2"},
	}
	a.w.ReportNeighbors(context.Background(), nb)
	get := func() (*v1alpha1.EdgeNodeStatus, error) {
		u, err := e.dyn.Resource(v1alpha1.GroupVersion.WithResource("edgenodestatuses")).Get(ctxT(t), node, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		var s v1alpha1.EdgeNodeStatus
		return &s, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s)
	}
	eventually(t, 10*time.Second, func() error {
		s, err := get()
		if err != nil {
			return err
		}
		if s.Status.Peers != 2 || s.Status.Established != 1 || len(s.Status.Neighbors) != 2 ||
			s.Status.Neighbors[0].EstablishedSince == nil || s.Status.Neighbors[1].LastError != "connection refused" {
			return fmt.Errorf("status %+v", s.Status)
		}
		return nil
	})
	w0 := counter(t, a.w, "neighbors")
	// Uptime moving on and a counter changing: not urgent, the interval
	// (an hour here) holds the write back.
	nb[0].UptimeSeconds, nb[0].Received = 160, 4
	a.w.ReportNeighbors(context.Background(), nb)
	time.Sleep(1500 * time.Millisecond)
	if got := counter(t, a.w, "neighbors") - w0; got != 0 {
		t.Errorf("counter-only change written %v times within the interval", got)
	}
	// A session changing state is written at once.
	nb[1].State, nb[1].LastError = "established", ""
	a.w.ReportNeighbors(context.Background(), nb)
	eventually(t, 5*time.Second, func() error {
		s, err := get()
		if err != nil {
			return err
		}
		if s.Status.Established != 2 || s.Status.Neighbors[0].Received != 4 {
			return fmt.Errorf("status %+v", s.Status)
		}
		return nil
	})

	// Switched off: nothing written.
	off := e.node(t, "edge-ens-off")
	b := e.startAgent(t, off, false, Options{NeighborStatus: false})
	b.w.ReportNeighbors(context.Background(), nb)
	time.Sleep(1500 * time.Millisecond)
	if _, err := e.dyn.Resource(v1alpha1.GroupVersion.WithResource("edgenodestatuses")).Get(ctxT(t), off, metav1.GetOptions{}); err == nil {
		t.Error("EdgeNodeStatus written although switched off")
	}
}

// A node whose first reconcile outlasts StartupHold keeps the leader
// waiting as long as its presence report's heartbeat comes in: the route
// is written once, with both nodes; a node that says it is starting for
// longer than StartupHoldMax is counted as not programmed.
func TestStatusSlowStarterHeartbeat(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t)
	e.createRoute(t, staticRoute(ns, "slow", "10.200.0.41", "10.244.1.1"))
	opts := Options{StartupHold: 2 * time.Second, StartupHeartbeat: 500 * time.Millisecond, StartupHoldMax: 12 * time.Second}
	a := e.startAgent(t, e.node(t, "edge-fast"), true, opts)
	b := e.startAgent(t, e.node(t, "edge-slow"), false, opts)
	a.waitRoutes(t, ns, 1)
	b.waitRoutes(t, ns, 1)
	eventually(t, 10*time.Second, func() error {
		if r := e.reports(t, b.node); len(r) != 1 || r[0].Slices != 0 {
			return fmt.Errorf("b's presence report: %+v", r)
		}
		return nil
	})
	time.Sleep(time.Second) // and the leader's cache has it
	a.report(ns, nil)

	// b is starting for three StartupHolds: its presence report carries a
	// heartbeat that moves, and the route stays unwritten.
	var beats []time.Time
	deadline := time.Now().Add(3 * opts.StartupHold)
	for time.Now().Before(deadline) {
		if r := e.reports(t, b.node); len(r) == 1 && r[0].Slices == 0 && r[0].Heartbeat != nil {
			if len(beats) == 0 || !r[0].Heartbeat.Time.Equal(beats[len(beats)-1]) {
				beats = append(beats, r[0].Heartbeat.Time)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(beats) < 3 {
		t.Errorf("presence heartbeats seen in %v: %v, want at least 3", 3*opts.StartupHold, beats)
	}
	if rt := e.getRoute(t, ns, "slow"); len(rt.Status.Conditions) != 0 {
		t.Fatalf("status written while a node says it is starting: %+v", rt.Status)
	}
	if got := testutil.ToFloat64(a.w.starting); got != 1 {
		t.Errorf("edgeagent_status_starting_nodes on the leader: %v, want 1", got)
	}
	b.report(ns, nil)
	eventually(t, 15*time.Second, func() error {
		if m := msg(e.getRoute(t, ns, "slow"), ConditionProgrammed); m != "programmed on 2 of 2 nodes" {
			return fmt.Errorf("Programmed: %q", m)
		}
		return nil
	})
	settle(t, a.w, 1)
	if got := counter(t, a.w, "leader"); got != 1 {
		t.Errorf("leader wrote the route %v times, want 1 (once, with the slow node)", got)
	}
	if r := e.reports(t, b.node); len(r) != 1 || r[0].Slices != 1 || r[0].Heartbeat != nil {
		t.Errorf("b's first report still carries its heartbeat, or is not in: %+v", r)
	}
	if got := testutil.ToFloat64(a.w.starting); got != 0 {
		t.Errorf("edgeagent_status_starting_nodes after every node reported: %v, want 0", got)
	}

	// A node that never finishes starting holds the route StartupHoldMax
	// at most after it appeared.
	c := e.startAgent(t, e.node(t, "edge-stuck"), false, opts)
	c.waitRoutes(t, ns, 1)
	appeared := time.Now()
	eventually(t, 30*time.Second, func() error {
		rt := e.getRoute(t, ns, "slow")
		if m := msg(rt, ConditionProgrammed); m != "programmed on 2 of 3 nodes" {
			return fmt.Errorf("Programmed: %q", m)
		}
		if n := rt.Status.Nodes; len(n) != 1 || n[0].Node != c.node || !strings.Contains(n[0].Message, "starting") {
			return fmt.Errorf("nodes %+v", n)
		}
		return nil
	})
	if waited := time.Since(appeared); waited < opts.StartupHold*2 {
		t.Errorf("the stuck node was counted after %v: its heartbeats did not hold the route", waited)
	}
}

// An agent restarted before its first report was in goes on heartbeating
// from its earlier presence report (a crash-looping node keeps the leader
// waiting only until StartupHoldMax after it first appeared).
func TestStatusRestartWhileStarting(t *testing.T) {
	e := setup(t)
	node := e.node(t, "edge-restart")
	opts := Options{StartupHeartbeat: 500 * time.Millisecond}
	heartbeat := func() time.Time {
		if r := e.reports(t, node); len(r) == 1 && r[0].Slices == 0 && r[0].Heartbeat != nil {
			return r[0].Heartbeat.Time
		}
		return time.Time{}
	}
	a := e.startAgent(t, node, false, opts)
	eventually(t, 10*time.Second, func() error {
		if heartbeat().IsZero() {
			return fmt.Errorf("no presence report with a heartbeat: %+v", e.reports(t, node))
		}
		return nil
	})
	a.stop()
	before := heartbeat()
	time.Sleep(1100 * time.Millisecond) // heartbeats have 1 s resolution
	b := e.startAgent(t, node, false, opts)
	eventually(t, 10*time.Second, func() error {
		if h := heartbeat(); !h.After(before) {
			return fmt.Errorf("heartbeat %v, not after the first agent's %v", h, before)
		}
		return nil
	})
	b.stop()
}

// The conditions are an atomic list: the leader's managedFields entry owns
// the list whole instead of every field of every condition (a quarter of
// the object when it was a map), and a condition someone else put there
// survives the leader's next write.
func TestStatusConditionsAtomic(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t)
	e.createRoute(t, staticRoute(ns, "web", "10.200.0.60", "10.244.1.1"))
	a := e.startAgent(t, e.node(t, "edge"), true, Options{Advertises: true})
	a.waitRoutes(t, ns, 1)
	a.report(ns, nil)
	eventually(t, 15*time.Second, func() error {
		if c := condition(e.getRoute(t, ns, "web"), ConditionReady); c != "True/Ready" {
			return fmt.Errorf("Ready %s", c)
		}
		return nil
	})

	routes := e.dyn.Resource(lbrgen.LBRouteResource).Namespace(ns)
	u, err := routes.Get(ctxT(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var owned map[string]any
	for _, mf := range u.GetManagedFields() {
		if mf.Manager == "edgeagent-leader" && mf.Subresource == "status" && mf.FieldsV1 != nil {
			var f map[string]any
			if err := json.Unmarshal(mf.FieldsV1.GetRawBytes(), &f); err != nil {
				t.Fatal(err)
			}
			st, _ := f["f:status"].(map[string]any)
			owned, _ = st["f:conditions"].(map[string]any)
			if owned == nil {
				t.Fatalf("the leader's managedFields do not own status.conditions: %s", mf.FieldsV1.GetRawString())
			}
		}
	}
	if owned == nil {
		t.Fatalf("no managedFields entry of edgeagent-leader on the status: %+v", u.GetManagedFields())
	}
	if len(owned) != 0 {
		t.Errorf("status.conditions is tracked per element (%d keys), not as one atomic list: %v", len(owned), owned)
	}

	// Another writer adds a condition of its own (an update, as the
	// leader writes).
	rt := fromUnstructured(t, u)
	rt.Status.Conditions = append(rt.Status.Conditions, metav1.Condition{Type: "ExampleAudited", Status: metav1.ConditionTrue,
		Reason: "Audited", Message: "someone else's", LastTransitionTime: metav1.Now()})
	obj, err := lbrgen.ToUnstructured(rt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routes.UpdateStatus(ctxT(t), obj, metav1.UpdateOptions{FieldManager: "auditor"}); err != nil {
		t.Fatalf("update status as another manager: %v", err)
	}
	// The node's view changes, so the leader writes the route again.
	a.report(ns, map[string]RouteReport{"web": {Programmed: false, Reals: 1}})
	eventually(t, 15*time.Second, func() error {
		rt := e.getRoute(t, ns, "web")
		if m := msg(rt, ConditionProgrammed); m != "programmed on none of 1 nodes" {
			return fmt.Errorf("Programmed: %q", m)
		}
		if c := condition(rt, "ExampleAudited"); c != "True/Audited" {
			return fmt.Errorf("the other writer's condition after the leader's write: %q (conditions %+v)", c, rt.Status.Conditions)
		}
		return nil
	})
}
