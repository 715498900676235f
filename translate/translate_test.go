package translate_test

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/golden"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/watcher"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func decodeAll(t *testing.T, doc string) []*v1alpha1.LBRoute {
	t.Helper()
	var out []*v1alpha1.LBRoute
	for _, d := range watcher.Decode([]byte(doc), "default") {
		if d.Err != nil {
			t.Fatalf("decode document %d: %v", d.Index, d.Err)
		}
		out = append(out, d.Route)
	}
	return out
}

// TestExamplesGolden translates the shipped examples and compares the
// desired state with a golden file, so any change in translation shows up
// as a reviewed diff.
func TestExamplesGolden(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	var routes []*v1alpha1.LBRoute
	for _, f := range files {
		if filepath.Base(f) == "standalone.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, decodeAll(t, string(data))...)
	}
	if len(routes) < 4 {
		t.Fatalf("found %d example LBRoutes, want at least 4", len(routes))
	}
	pools := []model.Pool{{CIDR: netip.MustParsePrefix("10.200.0.0/24")}, {CIDR: netip.MustParsePrefix("10.201.0.0/24"), Namespaces: []string{"shop"}}}
	state, results := translate.Build(routes, translate.Options{Pools: pools})
	for _, r := range results {
		if !r.Accepted {
			t.Errorf("example %s refused: %v", r.Key(), r.Problems)
		}
	}
	got, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, filepath.Join("testdata", "examples.golden.json"), append(got, '\n'))
}

func TestConflictOlderWins(t *testing.T) {
	routes := decodeAll(t, `apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: newer, namespace: a}
spec: {vsIP: 10.200.0.10, ports: [{port: 80}, {port: 443}], realServers: [{ip: 10.244.1.10}]}
---
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: older, namespace: b}
spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.11}]}
---
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: udp, namespace: c}
spec: {vsIP: 10.200.0.10, ports: [{port: 80, protocol: UDP}], realServers: [{ip: 10.244.1.12}]}
`)
	now := time.Now()
	routes[0].CreationTimestamp = metav1.NewTime(now)
	routes[1].CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	routes[2].CreationTimestamp = metav1.NewTime(now.Add(time.Hour))
	pools := []model.Pool{{CIDR: netip.MustParsePrefix("10.200.0.0/24")}}
	state, results := translate.Build(routes, translate.Options{Pools: pools})

	byKey := map[string]translate.Result{}
	for _, r := range results {
		byKey[r.Key()] = r
	}
	if r := byKey["a/newer"]; r.Accepted || r.Problems.Reason() != model.ReasonVIPConflict || !strings.Contains(r.Problems.Error(), "b/older") {
		t.Fatalf("newer route: %+v, want VIPConflict naming b/older", r)
	}
	if !byKey["b/older"].Accepted || !byKey["c/udp"].Accepted {
		t.Fatalf("older TCP and the UDP route on the same port must be accepted: %+v", results)
	}
	var keys []string
	for _, vs := range state.Services {
		keys = append(keys, vs.Key())
	}
	if want := []string{"b/older/TCP/80", "c/udp/UDP/80"}; !slices.Equal(keys, want) {
		t.Fatalf("state services %v, want %v (a refused route contributes nothing, not even its free port)", keys, want)
	}
}

func TestServiceForm(t *testing.T) {
	routes := decodeAll(t, `apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: api, namespace: shop}
spec:
  vsIP: 10.200.0.20
  ports: [{port: 443, targetPort: https}, {port: 80}, {port: 8080, targetPort: 9090}]
  service: {name: api}
`)
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	sep := model.ServiceEndpoints{
		Ports: []model.ServicePort{{Name: "https", Port: 443}, {Name: "http", Port: 80}},
		Endpoints: []model.Endpoint{
			{IP: a("10.244.1.10"), Ready: true, Serving: true, Ports: map[string]int32{"https": 8443, "http": 8080}},
			{IP: a("10.244.2.10"), Ready: false, Serving: true, Terminating: true, Ports: map[string]int32{"https": 8443, "http": 8080}},
			{IP: a("10.244.3.10"), Ready: false, Serving: false, Ports: map[string]int32{"https": 8443, "http": 8080}},
			{IP: a("fd00::10"), Ready: true, Serving: true, Ports: map[string]int32{"https": 8443, "http": 8080}},
		},
	}
	lookup := func(ns, name string) (model.ServiceEndpoints, bool) {
		return sep, ns == "shop" && name == "api"
	}
	state, results := translate.Build(routes, translate.Options{
		Pools:     []model.Pool{{CIDR: netip.MustParsePrefix("10.200.0.0/24")}},
		Endpoints: lookup,
	})
	if !results[0].Accepted || !results[0].ServiceFound {
		t.Fatalf("result %+v", results[0])
	}
	want := map[string][]model.Real{
		"shop/api/TCP/443": {
			{IP: a("10.244.1.10"), Port: 8443, Weight: 1, Healthy: true},
			{IP: a("10.244.2.10"), Port: 8443, Weight: 1, Healthy: true, Terminating: true},
		},
		"shop/api/TCP/80": {
			{IP: a("10.244.1.10"), Port: 8080, Weight: 1, Healthy: true},
			{IP: a("10.244.2.10"), Port: 8080, Weight: 1, Healthy: true, Terminating: true},
		},
		"shop/api/TCP/8080": {
			{IP: a("10.244.1.10"), Port: 9090, Weight: 1, Healthy: true},
			{IP: a("10.244.2.10"), Port: 9090, Weight: 1, Healthy: true, Terminating: true},
		},
	}
	if len(state.Services) != len(want) {
		t.Fatalf("got %d services, want %d", len(state.Services), len(want))
	}
	for _, vs := range state.Services {
		if !slices.Equal(vs.Reals, want[vs.Key()]) {
			t.Errorf("%s reals = %+v, want %+v", vs.Key(), vs.Reals, want[vs.Key()])
		}
		if n := vs.EligibleCount(); n != 1 {
			t.Errorf("%s: %d eligible reals, want 1 (terminating one drains)", vs.Key(), n)
		}
	}
}

func TestDefaults(t *testing.T) {
	routes := decodeAll(t, `apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web}
spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {type: HTTP, intervalSeconds: 1}}
`)
	state, results := translate.Build(routes, translate.Options{Pools: []model.Pool{{CIDR: netip.MustParsePrefix("10.200.0.0/24")}}})
	if !results[0].Accepted {
		t.Fatal(results[0].Problems)
	}
	vs := state.Services[0]
	if vs.Name != "default-web" || vs.Group != "default-web" || vs.Policy != model.RoundRobin || vs.Protocol != model.TCP {
		t.Errorf("defaults: name %q group %q policy %q protocol %q", vs.Name, vs.Group, vs.Policy, vs.Protocol)
	}
	if vs.Reals[0].Port != 80 || vs.Reals[0].Weight != 1 {
		t.Errorf("real defaults: %+v", vs.Reals[0])
	}
	h := vs.Health
	if h.Type != model.HealthHTTP || h.Path != "/" || h.Interval != time.Second || h.Timeout != time.Second || h.Rise != 2 || h.Fall != 3 {
		t.Errorf("health defaults: %+v (timeout must be clamped to the interval)", h)
	}
	if !h.Accepts(204) || h.Accepts(500) {
		t.Errorf("default expected status must be 200-399")
	}
}

// TestMemoSameAsWithout builds a sequence of snapshots twice, with one Memo
// carried through and without, and wants the same state and verdicts every
// time: an update (a new object), a conflict that appears and goes, a route
// deleted, a service-form route whose endpoints change under an unchanged
// object, and an object changed in place at a new resourceVersion.
func TestMemoSameAsWithout(t *testing.T) {
	routes := decodeAll(t, `apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: a, namespace: x, resourceVersion: "1"}
spec: {vsIP: 10.200.0.1, ports: [{port: 80}], realServers: [{ip: 10.244.1.12}, {ip: 10.244.1.10}]}
---
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: b, namespace: x, resourceVersion: "1"}
spec: {vsIP: 10.200.0.2, ports: [{port: 80}], realServers: [{ip: 10.244.1.11}]}
---
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: svc, namespace: x, resourceVersion: "1"}
spec: {vsIP: 10.200.0.3, ports: [{port: 80}], service: {name: svc}}
`)
	now := time.Now()
	for i, rt := range routes {
		rt.CreationTimestamp = metav1.NewTime(now.Add(time.Duration(i) * time.Minute))
	}
	ready := 1
	lookup := func(ns, name string) (model.ServiceEndpoints, bool) {
		sep := model.ServiceEndpoints{Ports: []model.ServicePort{{Name: "http", Port: 80}}}
		for i := range ready {
			sep.Endpoints = append(sep.Endpoints, model.Endpoint{IP: netip.AddrFrom4([4]byte{10, 244, 9, byte(1 + i)}), Ready: true, Serving: true, Ports: map[string]int32{"http": 8080}})
		}
		return sep, true
	}
	opts := translate.Options{Pools: []model.Pool{{CIDR: netip.MustParsePrefix("10.200.0.0/24")}}, Endpoints: lookup}
	memo := translate.NewMemo()
	check := func(step string, snap []*v1alpha1.LBRoute) (model.State, []translate.Result) {
		t.Helper()
		wantState, wantResults := translate.Build(snap, opts)
		o := opts
		o.Memo = memo
		state, results := translate.Build(snap, o)
		if !reflect.DeepEqual(state, wantState) || !reflect.DeepEqual(results, wantResults) {
			t.Fatalf("%s: with the memo\n%+v\n%+v\nwithout\n%+v\n%+v", step, state, results, wantState, wantResults)
		}
		return state, results
	}
	state, _ := check("first", routes)
	if got := state.Services[0].Reals; got[0].IP.String() != "10.244.1.10" {
		t.Fatalf("reals not in endpoint order: %+v", got)
	}
	check("again", routes)

	// b moves onto a's VIP: a new object, refused (older a keeps it).
	b2 := routes[1].DeepCopy()
	b2.ResourceVersion, b2.Spec.VSIP = "2", "10.200.0.1"
	snap := []*v1alpha1.LBRoute{routes[0], b2, routes[2]}
	if _, rs := check("conflict", snap); rs[1].Accepted {
		t.Fatalf("b on a's VIP accepted: %+v", rs[1])
	}
	// a goes: b, unchanged, is now accepted.
	snap = []*v1alpha1.LBRoute{b2, routes[2]}
	if _, rs := check("a deleted", snap); !rs[0].Accepted {
		t.Fatalf("b refused once a is gone: %+v", rs[0])
	}
	// The Service's endpoints change; the route object does not.
	ready = 3
	if st, _ := check("endpoints", snap); len(st.Services[1].Reals) != 3 {
		t.Fatalf("service-form route did not follow its endpoints: %+v", st.Services[1])
	}
	// The same pointer at a new resourceVersion (a source that reuses
	// objects) is translated again.
	b2.ResourceVersion, b2.Spec.RealServers = "3", append(b2.Spec.RealServers, v1alpha1.RealServer{IP: "10.244.1.20"})
	if st, _ := check("in place", snap); len(st.Services[0].Reals) != 2 {
		t.Fatalf("changed object served from the memo: %+v", st.Services[0])
	}
}
