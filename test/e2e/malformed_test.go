package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"
)

// badRoute is one malformed LBRoute. Exactly one of crd and reason is set:
// crd means the CRD's schema refuses it at admission (kubectl's error must
// name field); reason means it passes the schema and the agent refuses it
// (Accepted=False with that reason, the message naming field).
type badRoute struct {
	name   string
	ns     string // default "bad"
	mutate func(spec map[string]any)
	noSpec bool
	field  string
	crd    bool
	reason string
}

func setSpec(k string, v any) func(map[string]any) {
	return func(s map[string]any) { s[k] = v }
}

func delSpec(k string) func(map[string]any) {
	return func(s map[string]any) { delete(s, k) }
}

func health(h map[string]any) func(map[string]any) {
	return setSpec("healthCheck", h)
}

func port(p map[string]any) func(map[string]any) {
	return setSpec("ports", []map[string]any{p})
}

func reals(rs ...map[string]any) func(map[string]any) {
	return setSpec("realServers", rs)
}

// badRoutes: 46 refused by the CRD, 5 by the agent.
var badRoutes = []badRoute{
	// Refused by the CRD schema (OpenAPI + CEL) at admission.
	{name: "vip-not-ip", mutate: setSpec("vsIP", "not-an-ip"), field: "spec.vsIP", crd: true},
	{name: "vip-missing", mutate: delSpec("vsIP"), field: "spec.vsIP", crd: true},
	{name: "vip-too-long", mutate: setSpec("vsIP", strings.Repeat("1", 46)), field: "spec.vsIP", crd: true},
	{name: "ports-empty", mutate: setSpec("ports", []any{}), field: "spec.ports", crd: true},
	{name: "ports-missing", mutate: delSpec("ports"), field: "spec.ports", crd: true},
	{name: "ports-not-list", mutate: setSpec("ports", "80"), field: "spec.ports", crd: true},
	{name: "port-zero", mutate: port(map[string]any{"port": 0}), field: "spec.ports[0].port", crd: true},
	{name: "port-too-big", mutate: port(map[string]any{"port": 70000}), field: "spec.ports[0].port", crd: true},
	{name: "protocol-sctp", mutate: port(map[string]any{"port": 80, "protocol": "SCTP"}), field: "spec.ports[0].protocol", crd: true},
	{name: "ports-duplicate", mutate: setSpec("ports", []map[string]any{{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}}), field: "spec.ports", crd: true},
	{name: "policy-unknown", mutate: setSpec("policy", "leastconn"), field: "spec.policy", crd: true},
	{name: "service-and-reals", mutate: setSpec("service", map[string]any{"name": "web"}), field: "spec", crd: true},
	{name: "neither-service-nor-reals", mutate: delSpec("realServers"), field: "spec", crd: true},
	{name: "reals-empty", mutate: setSpec("realServers", []any{}), field: "spec.realServers", crd: true},
	{name: "real-not-ip", mutate: reals(map[string]any{"ip": "10.244.2"}), field: "spec.realServers[0].ip", crd: true},
	{name: "real-weight-zero", mutate: reals(map[string]any{"ip": "10.244.2.10", "weight": 0}), field: "spec.realServers[0].weight", crd: true},
	{name: "real-weight-big", mutate: reals(map[string]any{"ip": "10.244.2.10", "weight": 101}), field: "spec.realServers[0].weight", crd: true},
	{name: "real-port-negative", mutate: reals(map[string]any{"ip": "10.244.2.10", "port": -1}), field: "spec.realServers[0].port", crd: true},
	{name: "vsname-bad-start", mutate: setSpec("vsName", "-web"), field: "spec.vsName", crd: true},
	{name: "vsname-too-long", mutate: setSpec("vsName", strings.Repeat("v", 64)), field: "spec.vsName", crd: true},
	{name: "group-space", mutate: setSpec("group", "my group"), field: "spec.group", crd: true},
	{name: "health-type-icmp", mutate: health(map[string]any{"type": "ICMP"}), field: "spec.healthCheck.type", crd: true},
	{name: "health-interval-zero", mutate: health(map[string]any{"type": "TCP", "intervalSeconds": 0}), field: "spec.healthCheck.intervalSeconds", crd: true},
	{name: "health-timeout-over-interval", mutate: health(map[string]any{"type": "TCP", "intervalSeconds": 2, "timeoutSeconds": 5}), field: "spec.healthCheck", crd: true},
	{name: "health-path-relative", mutate: health(map[string]any{"type": "HTTP", "path": "healthz"}), field: "spec.healthCheck.path", crd: true},
	{name: "no-spec", noSpec: true, field: "spec", crd: true},

	// Static rules the agent enforces too; the CRD refuses them at
	// admission (translate/testdata/parity holds the full corpus).
	{name: "vip-loopback", mutate: setSpec("vsIP", "127.0.0.1"), field: "spec.vsIP", crd: true},
	{name: "vip-unspecified", mutate: setSpec("vsIP", "0.0.0.0"), field: "spec.vsIP", crd: true},
	{name: "vip-multicast", mutate: setSpec("vsIP", "224.0.0.9"), field: "spec.vsIP", crd: true},
	{name: "vip-broadcast", mutate: setSpec("vsIP", "255.255.255.255"), field: "spec.vsIP", crd: true},
	{name: "vip-link-local", mutate: setSpec("vsIP", "169.254.10.10"), field: "spec.vsIP", crd: true},
	{name: "real-loopback", mutate: reals(map[string]any{"ip": "127.0.0.1"}), field: "spec.realServers[0].ip", crd: true},
	{name: "real-unspecified", mutate: reals(map[string]any{"ip": "0.0.0.0"}), field: "spec.realServers[0].ip", crd: true},
	{name: "real-multicast", mutate: reals(map[string]any{"ip": "224.0.0.1"}), field: "spec.realServers[0].ip", crd: true},
	{name: "real-other-family", mutate: reals(map[string]any{"ip": "fd00::10"}), field: "spec.realServers", crd: true},
	{name: "reals-duplicate", mutate: reals(map[string]any{"ip": "10.244.2.10"}, map[string]any{"ip": "10.244.2.10"}), field: "spec.realServers", crd: true},
	{name: "target-port-name-static", mutate: port(map[string]any{"port": 80, "targetPort": "http"}), field: "spec.ports", crd: true},
	{name: "target-port-too-big", mutate: port(map[string]any{"port": 80, "targetPort": 70000}), field: "spec.ports[0].targetPort", crd: true},
	{name: "target-port-zero", mutate: port(map[string]any{"port": 80, "targetPort": 0}), field: "spec.ports[0].targetPort", crd: true},
	{name: "health-path-space", mutate: health(map[string]any{"type": "HTTP", "path": "/a b"}), field: "spec.healthCheck.path", crd: true},
	{name: "health-host-bad", mutate: health(map[string]any{"type": "HTTP", "host": "bad host!"}), field: "spec.healthCheck.host", crd: true},
	{name: "health-status-word", mutate: health(map[string]any{"type": "HTTP", "expectedStatus": "ok"}), field: "spec.healthCheck.expectedStatus", crd: true},
	{name: "health-status-700", mutate: health(map[string]any{"type": "HTTP", "expectedStatus": 700}), field: "spec.healthCheck.expectedStatus", crd: true},
	{name: "health-path-on-tcp", mutate: health(map[string]any{"type": "TCP", "path": "/healthz"}), field: "spec.healthCheck.type", crd: true},
	{name: "bgp-community-bogus", mutate: setSpec("bgp", map[string]any{"communities": []string{"bogus"}}), field: "spec.bgp.communities[0]", crd: true},
	{name: "bgp-large-community-bogus", mutate: setSpec("bgp", map[string]any{"largeCommunities": []string{"1:2"}}), field: "spec.bgp.largeCommunities[0]", crd: true},

	// Valid to the schema, refused by the agent: rules that need its vipPools,
	// the other LBRoutes or the namespace.
	{name: "vip-outside-pools", mutate: setSpec("vsIP", "10.201.0.5"), field: "spec.vsIP", reason: "VIPNotAllowed"},
	{name: "vip-ipv6-no-pool", mutate: func(s map[string]any) {
		s["vsIP"], s["realServers"] = "fd00:200::5", []map[string]any{{"ip": "fd00:244::10"}}
	}, field: "spec.vsIP", reason: "VIPNotAllowed"},
	{name: "vip-pool-other-namespace", mutate: setSpec("vsIP", "10.200.1.5"), field: "spec.vsIP", reason: "VIPNotAllowed"},
	{name: "vip-conflict", mutate: setSpec("vsIP", vipWeb), field: "spec.vsIP", reason: "VIPConflict"},
	// <namespace>-<name> is the default vsName; this one is 64 characters,
	// over the APV name limit of 63 (CRD rules cannot read the namespace).
	{name: "default-vsname-" + strings.Repeat("x", 45), field: "spec.vsName", reason: "InvalidSpec"},
}

func (b badRoute) object(s *suite) map[string]any {
	ns := b.ns
	if ns == "" {
		ns = "bad"
	}
	obj := s.route(ns, b.name, "10.200.0.100", s.bed.Env["POD2_IP"])
	spec := obj["spec"].(map[string]any)
	spec["healthCheck"] = map[string]any{"type": "None"}
	if b.mutate != nil {
		b.mutate(spec)
	}
	if b.noSpec {
		delete(obj, "spec")
	}
	return obj
}

// lbrCondition is the part of an LBRoute's status this scenario reads.
type lbrCondition struct {
	Type, Status, Reason, Message string
}

type lbrList struct {
	Items []struct {
		Metadata struct{ Name string }
		Status   struct{ Conditions []lbrCondition }
	}
}

// 51 malformed LBRoutes applied with kubectl while the client keeps
// requesting the good VIPs: each is refused, naming its field and the
// reason, by the CRD at admission or by the agent in its status; no request
// fails and the agent never restarts.
func (s *suite) malformed(t *testing.T) {
	pid := s.agent.PID()
	logBefore := len(s.agent.ReadLog())
	ls := s.startLoops()
	time.Sleep(time.Second)
	var crd, agent int
	for _, b := range badRoutes {
		out, err := s.apply(b.object(s))
		switch {
		case b.crd && err == nil:
			t.Errorf("%s: the CRD admitted it (want a rejection naming %s):\n%s", b.name, b.field, out)
		case b.crd && !strings.Contains(out, b.field):
			t.Errorf("%s: kubectl's rejection does not name %s:\n%s", b.name, b.field, out)
		case b.crd:
			crd++
			t.Logf("%s: refused at admission: %s", b.name, lineWith(out, b.field))
		case err != nil:
			t.Errorf("%s: refused at admission, but the schema should admit it (the agent refuses it):\n%s", b.name, out)
		default:
			agent++
		}
	}
	want := map[string]badRoute{}
	for _, b := range badRoutes {
		if !b.crd {
			want[b.name] = b
		}
	}
	var got map[string]lbrCondition
	poll.Until(t, 30*time.Second, "Accepted=False on every route the agent refuses", func() (bool, string) {
		out, err := s.api.Kubectl(t.Context(), "get", "lbr", "-n", "bad", "-o", "json")
		if err != nil {
			return false, err.Error()
		}
		var l lbrList
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			return false, err.Error()
		}
		got = map[string]lbrCondition{}
		for _, it := range l.Items {
			for _, c := range it.Status.Conditions {
				if c.Type == "Accepted" {
					got[it.Metadata.Name] = c
				}
			}
		}
		var missing []string
		for _, name := range sortedKeys(want) {
			if c, ok := got[name]; !ok || c.Status != "False" {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not yet refused: %v", missing)
	})
	for _, name := range sortedKeys(want) {
		b, c := want[name], got[name]
		if c.Reason != b.reason || !strings.Contains(c.Message, b.field) {
			t.Errorf("%s: Accepted=False reason %q message %q; want reason %s naming %s", name, c.Reason, c.Message, b.reason, b.field)
			continue
		}
		t.Logf("%s: refused by the agent: %s: %s", name, c.Reason, c.Message)
	}
	rep, err := s.agent.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, vip := range s.goodVIPs {
		if v, ok := s.vs(rep, vip); !ok || !v.Programmed {
			t.Errorf("good route %s not programmed after the malformed ones: %+v", vip, v)
		}
	}
	time.Sleep(settle)
	failed := s.expectNoFailures(t, ls)
	if s.agent.PID() != pid || !s.agent.Alive() {
		t.Errorf("the agent restarted or exited (pid %d, alive %v)", pid, s.agent.Alive())
	}
	if log := s.agent.ReadLog()[logBefore:]; strings.Contains(log, "panic") {
		t.Errorf("the agent's log mentions a panic:\n%s", log)
	}
	s.record("%d malformed LBRoutes (%d refused by the CRD at admission, %d by the agent with Accepted=False): %d failed of %d requests to the good routes; agent pid unchanged, no panic",
		len(badRoutes), crd, agent, failed, s.requests(ls))
}

// lineWith returns the first line of kubectl's output that names field.
func lineWith(out, field string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, field) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
