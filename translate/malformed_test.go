package translate_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/watcher"
)

// base is a valid LBRoute; each case below breaks it in one way.
const base = `apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec:
  vsIP: 10.200.0.10
  ports: [{port: 80, protocol: TCP, targetPort: 8080}]
  realServers: [{ip: 10.244.1.10, weight: 1}]
`

func TestBaseIsValid(t *testing.T) {
	res := decodeAndTranslate(t, base)
	if !res.Accepted {
		t.Fatalf("base LBRoute refused: %v", res.Problems)
	}
}

// TestMalformed asserts the exact field and reason for each kind of bad
// input the CRD schema alone would not (or, in standalone mode, cannot)
// catch.
func TestMalformed(t *testing.T) {
	hugeReals := "spec:\n  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers:\n"
	for i := range 1025 {
		hugeReals += fmt.Sprintf("  - {ip: 10.244.%d.%d}\n", i/250, i%250+1)
	}
	manyPorts := "spec:\n  vsIP: 10.200.0.10\n  realServers: [{ip: 10.244.1.10}]\n  ports:\n"
	for i := range 65 {
		manyPorts += fmt.Sprintf("  - {port: %d}\n", 1000+i)
	}
	cases := []struct {
		name   string
		spec   string // replaces the spec of base
		field  string
		reason string
		detail string // substring of the detail
	}{
		{"vip not an IP", `spec: {vsIP: 10.200.0.300, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonInvalidSpec, "not an IP address"},
		{"vip empty", `spec: {ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonInvalidSpec, "must be set"},
		{"vip with prefix", `spec: {vsIP: 10.200.0.10/32, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonInvalidSpec, "not an IP address"},
		{"vip unspecified", `spec: {vsIP: 0.0.0.0, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonInvalidSpec, "not a unicast address"},
		{"vip multicast", `spec: {vsIP: 224.0.0.5, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonInvalidSpec, "not a unicast address"},
		{"vip v4-mapped v6", `spec: {vsIP: "::ffff:10.200.0.10", ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonInvalidSpec, "IPv4-mapped"},
		{"vip with zone", `spec: {vsIP: "fe80::1%eth0", ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonInvalidSpec, "zone"},
		{"vip outside pools", `spec: {vsIP: 192.0.2.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonVIPNotAllowed, "no VIP pool"},
		{"vip in pool of other namespace", `spec: {vsIP: 10.201.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsIP", model.ReasonVIPNotAllowed, `namespace "shop"`},
		{"mixed family real", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: "fd00::10"}]}`, "spec.realServers[0].ip", model.ReasonInvalidSpec, "same IP family"},
		{"real not an IP", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: pod-a}]}`, "spec.realServers[0].ip", model.ReasonInvalidSpec, "not an IP address"},
		{"real loopback", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 127.0.0.1}]}`, "spec.realServers[0].ip", model.ReasonInvalidSpec, "cannot be a real server"},
		{"port 0", `spec: {vsIP: 10.200.0.10, ports: [{port: 0}], realServers: [{ip: 10.244.1.10}]}`, "spec.ports[0].port", model.ReasonInvalidSpec, "1-65535, got 0"},
		{"port 65536", `spec: {vsIP: 10.200.0.10, ports: [{port: 65536}], realServers: [{ip: 10.244.1.10}]}`, "spec.ports[0].port", model.ReasonInvalidSpec, "got 65536"},
		{"no ports", `spec: {vsIP: 10.200.0.10, ports: [], realServers: [{ip: 10.244.1.10}]}`, "spec.ports", model.ReasonInvalidSpec, "at least one port"},
		{"too many ports", manyPorts, "spec.ports", model.ReasonInvalidSpec, "at most 64 ports"},
		{"duplicate port", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}, {port: 80, protocol: TCP}], realServers: [{ip: 10.244.1.10}]}`, "spec.ports[1]", model.ReasonInvalidSpec, "duplicate of spec.ports[0]"},
		{"bad protocol", `spec: {vsIP: 10.200.0.10, ports: [{port: 80, protocol: SCTP}], realServers: [{ip: 10.244.1.10}]}`, "spec.ports[0].protocol", model.ReasonInvalidSpec, "not TCP or UDP"},
		{"lowercase protocol", `spec: {vsIP: 10.200.0.10, ports: [{port: 80, protocol: tcp}], realServers: [{ip: 10.244.1.10}]}`, "spec.ports[0].protocol", model.ReasonInvalidSpec, "not TCP or UDP"},
		{"targetPort 0", `spec: {vsIP: 10.200.0.10, ports: [{port: 80, targetPort: 70000}], realServers: [{ip: 10.244.1.10}]}`, "spec.ports[0].targetPort", model.ReasonInvalidSpec, "got 70000"},
		{"named targetPort with static reals", `spec: {vsIP: 10.200.0.10, ports: [{port: 80, targetPort: http}], realServers: [{ip: 10.244.1.10}]}`, "spec.ports[0].targetPort", model.ReasonInvalidSpec, "needs spec.service"},
		{"bad port name", `spec: {vsIP: 10.200.0.10, ports: [{port: 80, targetPort: "Http_Port"}], service: {name: web}}`, "spec.ports[0].targetPort", model.ReasonInvalidSpec, "not a valid port name"},
		{"both service and reals", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], service: {name: web}, realServers: [{ip: 10.244.1.10}]}`, "spec", model.ReasonInvalidSpec, "not both"},
		{"neither service nor reals", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}]}`, "spec", model.ReasonInvalidSpec, "exactly one of service or realServers"},
		{"empty reals", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: []}`, "spec.realServers", model.ReasonInvalidSpec, "at least one real server"},
		{"huge reals list", hugeReals, "spec.realServers", model.ReasonInvalidSpec, "at most 1024 real servers"},
		{"unknown policy", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], policy: lc, realServers: [{ip: 10.244.1.10}]}`, "spec.policy", model.ReasonInvalidSpec, `"lc" is not one of`},
		{"weight 0", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10, weight: 0}]}`, "spec.realServers[0].weight", model.ReasonInvalidSpec, "1-100, got 0"},
		{"weight 101", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10, weight: 101}]}`, "spec.realServers[0].weight", model.ReasonInvalidSpec, "got 101"},
		{"duplicate real", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}, {ip: 10.244.1.10}]}`, "spec.realServers[1]", model.ReasonInvalidSpec, "duplicate of spec.realServers[0]"},
		{"real port out of range", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10, port: -1}]}`, "spec.realServers[0].port", model.ReasonInvalidSpec, "1-65535"},
		{"negative interval", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {intervalSeconds: -5}}`, "spec.healthCheck.intervalSeconds", model.ReasonInvalidSpec, "got -5"},
		{"timeout above interval", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {intervalSeconds: 2, timeoutSeconds: 5}}`, "spec.healthCheck.timeoutSeconds", model.ReasonInvalidSpec, "must not exceed intervalSeconds"},
		{"rise 0 explicit negative", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {riseCount: -1}}`, "spec.healthCheck.riseCount", model.ReasonInvalidSpec, "1-100"},
		{"fall too big", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {fallCount: 1000}}`, "spec.healthCheck.fallCount", model.ReasonInvalidSpec, "got 1000"},
		{"bad check type", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {type: ICMP}}`, "spec.healthCheck.type", model.ReasonInvalidSpec, "not TCP, HTTP or None"},
		{"path without slash", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {type: HTTP, path: healthz}}`, "spec.healthCheck.path", model.ReasonInvalidSpec, "must start with '/'"},
		{"path with newline", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {type: HTTP, path: "/a\nb"}}`, "spec.healthCheck.path", model.ReasonInvalidSpec, "no spaces"},
		{"bad expected status", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {type: HTTP, expectedStatus: "300-200"}}`, "spec.healthCheck.expectedStatus", model.ReasonInvalidSpec, "not a range within 100-599"},
		{"expected status 700", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {type: HTTP, expectedStatus: 700}}`, "spec.healthCheck.expectedStatus", model.ReasonInvalidSpec, "not 100-599"},
		{"path on TCP check", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], healthCheck: {type: TCP, path: /x}}`, "spec.healthCheck.type", model.ReasonInvalidSpec, "only to type HTTP"},
		{"vsName too long", `spec: {vsName: ` + strings.Repeat("a", 64) + `, vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsName", model.ReasonInvalidSpec, "at most 63 characters"},
		{"vsName with space", `spec: {vsName: "shop web", vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.vsName", model.ReasonInvalidSpec, "must start with a letter or digit"},
		{"group CLI injection", `spec: {group: "g\nwrite memory", vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}`, "spec.group", model.ReasonInvalidSpec, "only letters, digits"},
		{"bad community", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], bgp: {communities: ["65536:1"]}}`, "spec.bgp.communities[0]", model.ReasonInvalidSpec, "not ASN:VALUE"},
		{"bad large community", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], bgp: {largeCommunities: ["1:2"]}}`, "spec.bgp.largeCommunities[0]", model.ReasonInvalidSpec, "not ASN:X:Y"},
		{"negative local pref", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}], bgp: {localPref: -1}}`, "spec.bgp.localPref", model.ReasonInvalidSpec, "0-4294967295"},
		{"bad service name", `spec: {vsIP: 10.200.0.10, ports: [{port: 80}], service: {name: Web_Svc}}`, "spec.service.name", model.ReasonInvalidSpec, "DNS-1035"},
	}
	if len(cases) < 25 {
		t.Fatalf("the issue asks for at least 25 malformed cases, have %d", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(base, base[strings.Index(base, "spec:"):], tc.spec+"\n", 1)
			res := decodeAndTranslate(t, doc)
			if res.Accepted {
				t.Fatalf("accepted; want %s on %s", tc.reason, tc.field)
			}
			for _, p := range res.Problems {
				if p.Field == tc.field && p.Reason == tc.reason && strings.Contains(p.Detail, tc.detail) {
					return
				}
			}
			t.Fatalf("problems %+v; want field %s reason %s detail containing %q", res.Problems, tc.field, tc.reason, tc.detail)
		})
	}
}

// TestDecodeErrors covers what fails before validation: these never reach
// translation and are reported with the decoder's words.
func TestDecodeErrors(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"unknown field", strings.Replace(base, "vsIP:", "vsIp:", 1), `unknown field "spec.vsIp"`},
		{"invalid UTF-8", strings.Replace(base, "name: web", "name: w\xffb", 1), "not valid UTF-8"},
		{"wrong kind", strings.Replace(base, "kind: LBRoute", "kind: Service", 1), `kind: "Service" is not LBRoute`},
		{"wrong group", strings.Replace(base, "apv.arraynetworks.com/v1alpha1", "v1", 1), `apiVersion: "v1"`},
		{"port as text", strings.Replace(base, "port: 80,", "port: eighty,", 1), "port"},
		{"not YAML", base + "  ports: [\n", "YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			docs := watcher.Decode([]byte(tc.doc), "default")
			if len(docs) != 1 || docs[0].Err == nil {
				t.Fatalf("got %+v, want one decode error", docs)
			}
			if !strings.Contains(docs[0].Err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", docs[0].Err, tc.want)
			}
		})
	}
}

var testPools = []model.Pool{
	{CIDR: netip.MustParsePrefix("10.200.0.0/24")},
	{CIDR: netip.MustParsePrefix("10.201.0.0/24"), Namespaces: []string{"infra"}},
	{CIDR: netip.MustParsePrefix("fd00:200::/64")},
}

func decodeAndTranslate(t *testing.T, doc string) translate.Result {
	t.Helper()
	docs := watcher.Decode([]byte(doc), "default")
	if len(docs) != 1 {
		t.Fatalf("want 1 document, got %d", len(docs))
	}
	if docs[0].Err != nil {
		t.Fatalf("decode: %v", docs[0].Err)
	}
	return translate.Route(docs[0].Route, translate.Options{Pools: testPools})
}
