package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/golden"
)

func TestWriteTableGolden(t *testing.T) {
	r := Report{
		Node: "edge-1", Version: "v0.1.0", Mode: "kubernetes", Ready: true,
		Degraded: []string{"apiserver unreachable: serving the last known state"},
		Neighbors: []Neighbor{
			{Address: "10.99.0.11", ASN: 64512, State: "established", UptimeSeconds: 83, Received: 1, Accepted: 1, Advertised: 2, GracefulRestart: true},
			{Address: "10.99.0.21", ASN: 64512, State: "active", LastError: "TCP MD5 signature mismatch"},
		},
		LearnedRoutes: []LearnedRoute{
			{Prefix: "10.244.1.0/24", NextHops: []string{"10.99.0.11"}, Metric: 1024},
			{Prefix: "10.244.2.0/24", NextHops: []string{"10.99.0.12"}, Metric: 1024, ShadowedBy: "bird metric 32 dev tunl0"},
		},
		Dataplane: &Dataplane{
			Backend: "iptables", Interface: "edge-vip0", InterfaceKind: "dummy", Rules: 12, IPTablesMode: "nft",
			IPTablesModeReason: "kubelet's KUBE-IPTABLES-HINT chain is in the nft ipv4 mangle table",
			Failures:           []DataplaneFailure{{Step: "sysctl", Error: "set sysctl net.ipv4.ip_forward=1 (it is 0): read-only file system", Since: time.Unix(1700000000, 0)}},
			FailingSince:       time.Unix(1700000000, 0),
		},
		VirtualServices: []VirtualService{{
			Key: "shop/web/TCP/80", Name: "shop-web", VIP: "10.200.0.10", Port: 80, Protocol: "TCP", Policy: "rr",
			Programmed: true, Advertised: true,
			Reals: []Real{
				{IP: "10.244.1.10", Port: 8080, Weight: 1, Healthy: true, LastResult: "ok", Since: time.Unix(0, 0)},
				{IP: "10.244.2.10", Port: 8080, Weight: 1, Healthy: false, LastResult: "connection refused"},
				{IP: "10.244.3.10", Port: 8080, Weight: 1, Healthy: true, Terminating: true},
			},
		}},
		LBRoutes:  []LBRoute{{Key: "shop/bad", Accepted: false, Reason: "VIPConflict", Problems: []Problem{{Field: "spec.vsIP", Reason: "VIPConflict", Detail: "TCP 10.200.0.10:80 is already used by LBRoute shop/web"}}}},
		APIServer: APIServer{Connected: false, Reconnects: 2, LastEventAgeSeconds: 31},
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "testdata/table.golden", buf.Bytes())
}

// With the nftables backend the dataplane line names the table and counts
// elements, and warnings are listed under it.
func TestWriteTableNFTables(t *testing.T) {
	r := Report{Dataplane: &Dataplane{Backend: "nftables", NFTablesTable: "inet edgeagent", Interface: "edge-vip0",
		InterfaceKind: "dummy", Rules: 50000, Warnings: []string{"table inet filter chain forward has policy drop at the forward hook"}}}
	var buf bytes.Buffer
	if err := WriteTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Dataplane: edge-vip0 (dummy), backend nftables (table inet edgeagent), 50000 elements\n",
		"  WARNING  table inet filter chain forward has policy drop at the forward hook\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}
