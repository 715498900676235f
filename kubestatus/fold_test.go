package kubestatus

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func entry(prog, adv bool, reals, healthy int32) *v1alpha1.ReportedRoute {
	return &v1alpha1.ReportedRoute{Namespace: "ns", Name: "r", Generation: 3, Programmed: prog, Advertised: adv, Reals: reals, HealthyReals: healthy}
}

func TestFold(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Hour))
	ok := Verdict{Accepted: true, VSName: "ns-r", Group: "ns-r", Ports: "80/TCP", Reals: 2}
	bgp := func(name string, e *v1alpha1.ReportedRoute) NodeView {
		return NodeView{Node: name, Advertises: true, Entry: e}
	}
	dp := func(name string, e *v1alpha1.ReportedRoute) NodeView { return NodeView{Node: name, Entry: e} }
	stale := entry(true, true, 2, 2)
	stale.Generation = 2
	for _, c := range []struct {
		name  string
		v     Verdict
		nodes []NodeView
		want  string // Accepted Programmed Advertised Ready
		msgs  string // Programmed | Advertised | Ready messages
		list  string // status.nodes: node=message
	}{
		{"all good", ok, []NodeView{bgp("a", entry(true, true, 2, 2)), bgp("b", entry(true, true, 2, 2))},
			"True/Accepted True/Programmed True/Advertised True/Ready",
			"programmed on 2 of 2 nodes|advertised by 2 of 2 nodes|serving from 2 of 2 nodes", ""},
		{"rejected", Verdict{Reason: "VIPNotAllowed", Message: "spec.vsIP: ..."}, []NodeView{bgp("a", entry(false, false, 0, 0))},
			"False/VIPNotAllowed False/Rejected False/Rejected False/Rejected",
			"the route was rejected|the route was rejected|the route was rejected", ""},
		{"one node of two serves", ok, []NodeView{bgp("a", entry(false, false, 2, 0)), bgp("b", entry(true, true, 2, 1))},
			"True/Accepted True/Programmed True/Advertised True/Ready",
			"programmed on 1 of 2 nodes|advertised by 1 of 2 nodes|serving from 1 of 2 nodes",
			"a=not programmed b=1 of 2 reals pass their health check"},
		{"programmed, nobody advertises", ok, []NodeView{bgp("a", entry(true, false, 2, 2)), bgp("b", entry(true, false, 2, 2))},
			"True/Accepted True/Programmed False/NotAdvertised False/NotAdvertised",
			"programmed on 2 of 2 nodes|advertised by none of 2 nodes|no node that programmed it advertises the VIP",
			"a=not advertised b=not advertised"},
		// Dataplane-only edge nodes (bgp.enabled false) serve what they
		// program: Ready, and Advertised says why not.
		{"no node runs BGP", ok, []NodeView{dp("a", entry(true, false, 2, 2)), dp("b", entry(true, false, 2, 2))},
			"True/Accepted True/Programmed False/BGPDisabled True/Ready",
			"programmed on 2 of 2 nodes|no edge node runs BGP (bgp.enabled: false)|serving from 2 of 2 nodes", ""},
		{"mixed: the dataplane-only node serves", ok, []NodeView{bgp("a", entry(true, false, 2, 2)), dp("b", entry(true, false, 2, 2))},
			"True/Accepted True/Programmed False/NotAdvertised True/Ready",
			"programmed on 2 of 2 nodes|advertised by none of 2 nodes|serving from 1 of 2 nodes", "a=not advertised"},
		{"no healthy real", ok, []NodeView{bgp("a", entry(true, true, 2, 0))},
			"True/Accepted True/Programmed True/Advertised False/NoHealthyReals",
			"programmed on 1 of 1 nodes|advertised by 1 of 1 nodes|no real server passes its health check", "a=no real passes its health check"},
		{"no endpoints", Verdict{Accepted: true}, []NodeView{bgp("a", entry(true, true, 0, 0))},
			"True/Accepted True/Programmed True/Advertised False/NoEndpoints",
			"programmed on 1 of 1 nodes|advertised by 1 of 1 nodes|the route has no ready endpoints", "a=no reals"},
		{"service missing", Verdict{Accepted: true, ServiceForm: true}, []NodeView{bgp("a", entry(false, false, 0, 0))},
			"True/Accepted False/NotProgrammed False/NotAdvertised False/NoEndpoints",
			"programmed on none of 1 nodes|advertised by none of 1 nodes|Service \"svc\" not found", "a=not programmed"},
		{"nobody programmed it", ok, []NodeView{bgp("a", entry(false, false, 2, 2))},
			"True/Accepted False/NotProgrammed False/NotAdvertised False/NotProgrammed",
			"programmed on none of 1 nodes|advertised by none of 1 nodes|programmed on none of 1 nodes", "a=not programmed"},
		// A node still on the previous generation is not counted for this one.
		{"a node lags a generation", ok, []NodeView{bgp("a", entry(true, true, 2, 2)), bgp("b", stale)},
			"True/Accepted True/Programmed True/Advertised True/Ready",
			"programmed on 1 of 2 nodes|advertised by 1 of 2 nodes|serving from 1 of 2 nodes",
			"b=has not programmed generation 3 yet (reports 2)"},
		{"a node without an entry, one starting", ok, []NodeView{bgp("a", entry(true, true, 2, 2)), bgp("b", nil), {Node: "c", Pending: true, Advertises: true}},
			"True/Accepted True/Programmed True/Advertised True/Ready",
			"programmed on 1 of 3 nodes|advertised by 1 of 3 nodes|serving from 1 of 3 nodes",
			"b=no report on this route yet c=the agent is starting: no report yet"},
		{"no nodes at all", ok, nil,
			"True/Accepted False/NotProgrammed False/NotAdvertised False/NotProgrammed",
			"programmed on none of 0 nodes|advertised by none of 0 nodes|programmed on none of 0 nodes", ""},
	} {
		rt := &v1alpha1.LBRoute{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", Generation: 3},
			Spec: v1alpha1.LBRouteSpec{Service: &v1alpha1.ServiceRef{Name: "svc"}}}
		st := Fold(rt, c.v, c.nodes, t0)
		var got, msgs []string
		for _, typ := range []string{ConditionAccepted, ConditionProgrammed, ConditionAdvertised, ConditionReady} {
			got = append(got, condition(&v1alpha1.LBRoute{Status: st}, typ))
		}
		for _, typ := range []string{ConditionProgrammed, ConditionAdvertised, ConditionReady} {
			msgs = append(msgs, msg(&v1alpha1.LBRoute{Status: st}, typ))
		}
		var list []string
		for _, n := range st.Nodes {
			list = append(list, n.Node+"="+n.Message)
		}
		if s := strings.Join(got, " "); s != c.want {
			t.Errorf("%s: %s, want %s", c.name, s, c.want)
		}
		if s := strings.Join(msgs, "|"); s != c.msgs {
			t.Errorf("%s: messages %s, want %s", c.name, s, c.msgs)
		}
		if s := strings.Join(list, " "); s != c.list {
			t.Errorf("%s: nodes %s, want %s", c.name, s, c.list)
		}
		if st.ObservedGeneration != 3 {
			t.Errorf("%s: observedGeneration %d", c.name, st.ObservedGeneration)
		}
		// Folding again with the result in place keeps transition times and
		// compares equal: the no-op check holds.
		rt.Status = st
		again := Fold(rt, c.v, c.nodes, t1)
		if !SameStatus(&rt.Status, &again) {
			t.Errorf("%s: refolded status differs", c.name)
		}
		if c := meta.FindStatusCondition(again.Conditions, ConditionReady); !c.LastTransitionTime.Equal(&t0) {
			t.Errorf("transition time moved without a transition: %v", c.LastTransitionTime)
		}
		for _, n := range again.Nodes {
			if !n.LastTransitionTime.Equal(&t0) {
				t.Errorf("%s: node %s listed since %v, want %v", c.name, n.Node, n.LastTransitionTime, t0)
			}
		}
	}
}

// However many nodes fail, status.nodes holds at most MaxListedNodes, the
// nodes that do not serve at all first.
func TestFoldListIsCapped(t *testing.T) {
	rt := &v1alpha1.LBRoute{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", Generation: 3}}
	var nodes []NodeView
	for i := range 50 {
		nodes = append(nodes, NodeView{Node: fmt.Sprintf("n%02d", i), Advertises: true, Entry: entry(true, true, 2, 1)})
	}
	nodes = append(nodes, NodeView{Node: "z-down", Advertises: true, Entry: entry(false, false, 2, 0)})
	st := Fold(rt, Verdict{Accepted: true, Reals: 2}, nodes, metav1.Now())
	if len(st.Nodes) != MaxListedNodes {
		t.Fatalf("%d nodes listed, want %d", len(st.Nodes), MaxListedNodes)
	}
	found := false
	for _, n := range st.Nodes {
		found = found || n.Node == "z-down"
	}
	if !found {
		t.Errorf("the node that does not serve is not listed: %+v", st.Nodes)
	}
	if m := msg(&v1alpha1.LBRoute{Status: st}, ConditionReady); m != "serving from 50 of 51 nodes" {
		t.Errorf("Ready: %q", m)
	}
}

func TestSliceCountAndLookup(t *testing.T) {
	for _, c := range []struct {
		routes  int
		current int32
		want    int32
	}{
		{0, 0, 1}, {1, 0, 1}, {500, 0, 1}, {501, 0, 2}, {1000, 0, 2}, {1001, 0, 4},
		{10000, 0, 32}, {5000, 0, 16},
		{600, 2, 2}, {300, 2, 2}, {249, 2, 1}, // hysteresis: lowered at a quarter only
		{1001, 2, 4}, {0, 1, 1},
	} {
		if got := SliceCount(c.routes, c.current); got != c.want {
			t.Errorf("SliceCount(%d, %d) = %d, want %d", c.routes, c.current, got, c.want)
		}
	}
	var routes []v1alpha1.ReportedRoute
	for i := range 2000 {
		routes = append(routes, v1alpha1.ReportedRoute{Namespace: fmt.Sprintf("ns%d", i%7), Name: fmt.Sprintf("r%d", i), Generation: 1})
	}
	parts := Slice(routes, 4)
	total := 0
	for i, p := range parts {
		total += len(p)
		if len(p) < 350 || len(p) > 650 {
			t.Errorf("slice %d holds %d of 2000 routes", i, len(p))
		}
		for _, r := range p {
			if got, ok := Find(p, r.Namespace, r.Name); !ok || got != r {
				t.Fatalf("Find %s/%s in its slice: %v", r.Namespace, r.Name, ok)
			}
		}
	}
	if total != 2000 {
		t.Errorf("%d routes in the slices", total)
	}
	if _, ok := Find(parts[0], "nope", "r1"); ok {
		t.Error("found a route that is not there")
	}
	if n := ReportName(strings.Repeat("a", 300), 12); len(n) > 253 || !strings.HasSuffix(n, "-12") {
		t.Errorf("report name %q", n)
	}
	if v := NodeLabelValue(strings.Repeat("n", 100)); len(v) > 63 || !strings.HasPrefix(v, "h-") {
		t.Errorf("label value %q", v)
	}
	if v := NodeLabelValue("edge-1"); v != "edge-1" {
		t.Errorf("label value %q", v)
	}
}

func TestDiffRoutes(t *testing.T) {
	r := func(name string, prog bool) v1alpha1.ReportedRoute {
		return v1alpha1.ReportedRoute{Namespace: "ns", Name: name, Generation: 1, Programmed: prog}
	}
	a := []v1alpha1.ReportedRoute{r("a", true), r("b", true), r("c", true)}
	b := []v1alpha1.ReportedRoute{r("b", false), r("c", true), r("d", true)}
	if got := strings.Join(diffRoutes(a, b), " "); got != "ns/a ns/b ns/d" {
		t.Errorf("diff %s", got)
	}
	if got := diffRoutes(a, a); len(got) != 0 {
		t.Errorf("diff of equal lists: %v", got)
	}
}
