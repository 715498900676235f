package watcher

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/internal/poll"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// agentT is one simulated agent: a source and its status writer.
type agentT struct {
	k *Kube
	w *StatusWriter
}

func (e *env) startAgent(t *testing.T, node string, leader bool, opts StatusOptions) *agentT {
	t.Helper()
	k, _ := e.startKube(t, KubeOptions{NodeName: node})
	opts.NodeName = node
	if opts.QPS == 0 {
		opts.QPS, opts.Burst = 1000, 1000
	}
	opts.Registerer = prometheus.NewRegistry()
	w, err := NewStatusWriter(k, opts)
	if err != nil {
		t.Fatal(err)
	}
	w.SetLeader(leader)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &agentT{k: k, w: w}
}

// report translates the snapshot like the agent and reports every route,
// with programmed/advertised/healthy as given per route name (default:
// programmed, advertised, all reals healthy).
func (a *agentT) report(ns string, pools []model.Pool, override map[string]RouteReport) []translate.Result {
	_, results := stateOf(a.k, pools)
	reports := make([]RouteReport, 0, len(results))
	for _, r := range results {
		if r.Namespace != ns {
			continue // other tests' routes: the shared apiserver holds them too
		}
		rep := RouteReport{Result: r}
		if r.Accepted {
			rep.Programmed, rep.Advertised = true, true
			if len(r.Services) > 0 {
				rep.Reals = len(r.Services[0].Reals)
				rep.HealthyReals = rep.Reals
			}
		}
		if o, ok := override[r.Name]; ok {
			o.Result = r
			rep = o
		}
		reports = append(reports, rep)
	}
	a.w.ReportRoutes(context.Background(), reports)
	return results
}

func routesIn(k *Kube, ns string) int {
	n := 0
	for _, rt := range k.Snapshot().Routes {
		if rt.Namespace == ns {
			n++
		}
	}
	return n
}

func condition(rt *v1alpha1.LBRoute, typ string) string {
	c := meta.FindStatusCondition(rt.Status.Conditions, typ)
	if c == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s/%s", c.Status, c.Reason)
}

func (e *env) events(t *testing.T, ns, name string) []string {
	t.Helper()
	list, err := e.admin.CoreV1().Events(ns).List(ctxT(t), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		out = append(out, ev.Type+"/"+ev.Reason)
	}
	return out
}

func TestStatusRejectionsConditionsAndEvents(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t, nil)
	pools := []model.Pool{{CIDR: netip.MustParsePrefix("10.200.0.0/24")}}
	e.createRoute(t, staticRoute(ns, "good", "10.200.0.20", "10.244.1.1"))
	time.Sleep(1100 * time.Millisecond) // creation timestamps have 1 s resolution: make "good" older
	e.createRoute(t, staticRoute(ns, "conflict", "10.200.0.20", "10.244.1.2"))
	e.createRoute(t, staticRoute(ns, "outside", "10.201.0.1", "10.244.1.3"))
	e.createRoute(t, serviceRoute(ns, "nosvc", "10.200.0.21", "missing"))

	a := e.startAgent(t, "edge-1", true, StatusOptions{})
	eventually(t, 10*time.Second, func() error {
		if n := routesIn(a.k, ns); n < 4 {
			return fmt.Errorf("%d routes", n)
		}
		return nil
	})
	a.report(ns, pools, nil)

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
	if len(good.Status.Nodes) != 1 || !good.Status.Nodes[0].Programmed || good.Status.Nodes[0].Node != "edge-1" {
		t.Errorf("nodes: %+v", good.Status.Nodes)
	}
	msg := meta.FindStatusCondition(e.getRoute(t, ns, "outside").Status.Conditions, ConditionAccepted).Message
	if !strings.Contains(msg, "spec.vsIP") || !strings.Contains(msg, "10.201.0.1") {
		t.Errorf("rejection message does not name the field and value: %q", msg)
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
		if a.k.Snapshot().Routes == nil {
			return fmt.Errorf("no routes")
		}
		a.report(ns, pools, nil)
		if c := condition(e.getRoute(t, ns, "conflict"), ConditionAccepted); c != "True/Accepted" {
			return fmt.Errorf("conflict route: %s", c)
		}
		return nil
	})
}

func TestStatusTwoAgentsDoNotClobber(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t, nil)
	e.createRoute(t, staticRoute(ns, "shared", "10.200.0.30", "10.244.1.1", "10.244.1.2"))
	a := e.startAgent(t, "edge-a", true, StatusOptions{})
	b := e.startAgent(t, "edge-b", false, StatusOptions{})
	for _, x := range []*agentT{a, b} {
		eventually(t, 10*time.Second, func() error {
			if routesIn(x.k, ns) != 1 {
				return fmt.Errorf("route not seen")
			}
			return nil
		})
	}
	a.report(ns, testPools, nil)
	b.report(ns, testPools, map[string]RouteReport{"shared": {Programmed: true, Advertised: false, Reals: 2, HealthyReals: 1}})

	nodes := func() map[string]v1alpha1.NodeStatus {
		out := map[string]v1alpha1.NodeStatus{}
		for _, n := range e.getRoute(t, ns, "shared").Status.Nodes {
			out[n.Node] = n
		}
		return out
	}
	eventually(t, 10*time.Second, func() error {
		n := nodes()
		if !n["edge-a"].Advertised || n["edge-a"].HealthyReals != 2 || n["edge-b"].Advertised || n["edge-b"].HealthyReals != 1 || !n["edge-b"].Programmed {
			return fmt.Errorf("nodes %+v", n)
		}
		c := meta.FindStatusCondition(e.getRoute(t, ns, "shared").Status.Conditions, ConditionAdvertised)
		if c == nil || c.Message != "advertised by 1 of 2 nodes" {
			return fmt.Errorf("leader's Advertised condition: %+v", c)
		}
		return nil
	})
	// b changes its view; a's entry and the leader's fields stay.
	b.report(ns, testPools, map[string]RouteReport{"shared": {Programmed: false, Advertised: false, Reals: 2, HealthyReals: 0}})
	eventually(t, 10*time.Second, func() error {
		n := nodes()
		if n["edge-b"].Programmed || !n["edge-a"].Programmed || !n["edge-a"].Advertised {
			return fmt.Errorf("nodes %+v", n)
		}
		c := meta.FindStatusCondition(e.getRoute(t, ns, "shared").Status.Conditions, ConditionProgrammed)
		if c == nil || c.Message != "programmed on 1 of 2 nodes" {
			return fmt.Errorf("leader's Programmed condition: %+v", c)
		}
		return nil
	})
	if got := b.w.Writes(); got != 2 {
		t.Errorf("non-leader agent made %d writes, want 2 (its own entry, twice)", got)
	}
}

// A resync that reports the same 1,000 routes again writes nothing, and
// neither does a restarted agent that finds its status already in place.
func TestStatusNoWriteStormOnResync(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t, nil)
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

	settle := func(a *agentT, want int64) int64 {
		t.Helper()
		var last int64 = -1
		stableSince := time.Now()
		poll.Every(100*time.Millisecond).Until(t, 90*time.Second, "status writes to settle", func() (bool, string) {
			cur := a.w.Writes()
			if cur != last {
				last, stableSince = cur, time.Now()
			}
			return cur >= want && time.Since(stableSince) > time.Second, fmt.Sprintf("%d writes (want >= %d, unchanged for 1s)", cur, want)
		})
		return last
	}
	a := e.startAgent(t, "edge-storm", true, StatusOptions{})
	eventually(t, 30*time.Second, func() error {
		if got := routesIn(a.k, ns); got != n {
			return fmt.Errorf("%d routes", got)
		}
		return nil
	})
	start := time.Now()
	a.report(ns, testPools, nil)
	first := settle(a, 2*n)
	t.Logf("first report of %d routes: %d writes in %v", n, first, time.Since(start).Round(time.Millisecond))
	if first != 2*n {
		t.Errorf("first report: %d writes, want %d (one node entry + one leader status per route)", first, 2*n)
	}
	for range 3 {
		a.report(ns, testPools, nil)
	}
	time.Sleep(2 * time.Second)
	if got := a.w.Writes() - first; got != 0 {
		t.Errorf("resync of %d unchanged routes made %d writes, want 0", n, got)
	}

	// A restarted agent (fresh writer, same node) finds everything in place.
	b := e.startAgent(t, "edge-storm", true, StatusOptions{})
	eventually(t, 30*time.Second, func() error {
		if got := routesIn(b.k, ns); got != n {
			return fmt.Errorf("%d routes", got)
		}
		return nil
	})
	b.report(ns, testPools, nil)
	time.Sleep(3 * time.Second)
	if got := b.w.Writes(); got != 0 {
		t.Errorf("restarted agent made %d writes for unchanged status, want 0", got)
	}
}

func TestEdgeNodeStatus(t *testing.T) {
	e := setup(t)
	node := fmt.Sprintf("edge-ens-%d", time.Now().UnixNano()%100000)
	a := e.startAgent(t, node, false, StatusOptions{NeighborStatus: true, NeighborInterval: time.Hour})
	nb := []status.Neighbor{
		{Address: "10.99.0.11", ASN: 64512, State: "established", UptimeSeconds: 100, Received: 3, Source: "config"},
		{Address: "10.99.0.12", ASN: 64512, State: "active", LastError: "connection refused", Source: "node/calico2"},
	}
	a.w.ReportNeighbors(context.Background(), nb)
	get := func() (*v1alpha1.EdgeNodeStatus, error) {
		u, err := e.dyn.Resource(EdgeNodeStatusResource).Get(ctxT(t), node, metav1.GetOptions{})
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
	w0 := a.w.Writes()
	// Uptime moving on and a counter changing: not urgent, the interval
	// (an hour here) holds the write back.
	nb[0].UptimeSeconds, nb[0].Received = 160, 4
	a.w.ReportNeighbors(context.Background(), nb)
	time.Sleep(1500 * time.Millisecond)
	if got := a.w.Writes() - w0; got != 0 {
		t.Errorf("counter-only change written %d times within the interval", got)
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
	off := fmt.Sprintf("edge-ens-off-%d", time.Now().UnixNano()%100000)
	b := e.startAgent(t, off, false, StatusOptions{NeighborStatus: false})
	b.w.ReportNeighbors(context.Background(), nb)
	time.Sleep(1500 * time.Millisecond)
	if _, err := e.dyn.Resource(EdgeNodeStatusResource).Get(ctxT(t), off, metav1.GetOptions{}); err == nil {
		t.Error("EdgeNodeStatus written although switched off")
	}
}
