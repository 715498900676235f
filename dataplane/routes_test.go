package dataplane

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/internal/testns"
)

func TestRouteTableReplaceListDelete(t *testing.T) {
	ns := testns.New(t, "rt")
	peer := testns.New(t, "rtp")
	testns.Veth(t, ns, "eth0", "10.98.0.1/24", peer, "eth0", "10.98.0.2/24")
	ns.MustRun("ip", "addr", "add", "10.98.0.3/24", "dev", "eth0")
	// A route someone else owns must survive everything below.
	ns.MustRun("ip", "route", "add", "10.250.0.0/24", "via", "10.98.0.2")

	rt := NewRouteTable(ns.Handle(), 0)
	block := netip.MustParsePrefix("10.244.1.0/24")
	one := []netip.Addr{netip.MustParseAddr("10.98.0.2")}
	two := []netip.Addr{netip.MustParseAddr("10.98.0.3"), netip.MustParseAddr("10.98.0.2")}

	if err := rt.Replace(block, one); err != nil {
		t.Fatal(err)
	}
	if out := ns.MustRun("ip", "route", "show", "10.244.1.0/24"); !strings.Contains(out, "proto 237") || !strings.Contains(out, "via 10.98.0.2") {
		t.Fatalf("kernel route = %q, want via 10.98.0.2 proto 237", out)
	}
	if err := rt.Replace(block, two); err != nil {
		t.Fatal(err)
	}
	got, err := rt.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("10.98.0.2"), netip.MustParseAddr("10.98.0.3")}
	if len(got) != 1 || !slices.Equal(got[block], want) {
		t.Fatalf("List = %v, want only %s via %v", got, block, want)
	}
	if err := rt.Delete(block); err != nil {
		t.Fatal(err)
	}
	if err := rt.Delete(block); err != nil {
		t.Fatalf("second delete must be a no-op: %v", err)
	}
	if got, _ := rt.List(); len(got) != 0 {
		t.Fatalf("after delete List = %v", got)
	}
	if out := ns.MustRun("ip", "route", "show", "10.250.0.0/24"); !strings.Contains(out, "via 10.98.0.2") {
		t.Fatalf("foreign route disturbed: %q", out)
	}
}

// calico-node's BIRD on the edge node routes a pod block itself (here as
// it does in IPIP mode: proto bird, metric 32, through another next hop).
// The agent's route for the same block must not take over: the kernel keeps
// using BIRD's, Preferred says so, and once BIRD withdraws its route the
// agent's carries the traffic.
func TestRouteTableYieldsToOtherDaemons(t *testing.T) {
	ns := testns.New(t, "rty")
	peer := testns.New(t, "rtyp")
	testns.Veth(t, ns, "eth0", "10.98.0.1/24", peer, "eth0", "10.98.0.2/24")
	peer.MustRun("ip", "addr", "add", "10.98.0.3/24", "dev", "eth0")
	block := netip.MustParsePrefix("10.244.7.0/24")
	ns.MustRun("ip", "route", "add", block.String(), "via", "10.98.0.3", "proto", "bird", "metric", "32")

	rt := NewRouteTable(ns.Handle(), 0)
	if rt.Metric() != DefaultRouteMetric {
		t.Fatalf("metric = %d, want the default %d", rt.Metric(), DefaultRouteMetric)
	}
	if err := rt.Replace(block, []netip.Addr{netip.MustParseAddr("10.98.0.2")}); err != nil {
		t.Fatal(err)
	}
	routes := ns.MustRun("ip", "route", "show", block.String())
	if !strings.Contains(routes, "proto bird metric 32") || !strings.Contains(routes, "proto 237 metric 1024") {
		t.Fatalf("both routes must stay, got:\n%s", routes)
	}
	if got := ns.MustRun("ip", "route", "get", "10.244.7.10"); !strings.Contains(got, "via 10.98.0.3") {
		t.Fatalf("ip route get = %q: BIRD's route (via 10.98.0.3) must win", got)
	}
	pref, err := rt.Preferred([]netip.Prefix{block, netip.MustParsePrefix("10.244.8.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if len(pref) != 1 || pref[block] != "bird metric 32 via [10.98.0.3]" {
		t.Fatalf("Preferred = %v, want only %s: bird metric 32 via [10.98.0.3]", pref, block)
	}

	ns.MustRun("ip", "route", "del", block.String(), "proto", "bird", "metric", "32")
	if got := ns.MustRun("ip", "route", "get", "10.244.7.10"); !strings.Contains(got, "via 10.98.0.2") {
		t.Fatalf("after BIRD's withdrawal ip route get = %q, want the agent's via 10.98.0.2", got)
	}
	if pref, _ := rt.Preferred([]netip.Prefix{block}); len(pref) != 0 {
		t.Fatalf("Preferred after BIRD's withdrawal = %v, want none", pref)
	}
	// Deleting the agent's route never touches another protocol's.
	ns.MustRun("ip", "route", "add", block.String(), "via", "10.98.0.3", "proto", "bird", "metric", "32")
	if err := rt.Delete(block); err != nil {
		t.Fatal(err)
	}
	if got := ns.MustRun("ip", "route", "show", block.String()); !strings.Contains(got, "proto bird") || strings.Contains(got, "proto 237") {
		t.Fatalf("after Delete: %q, want BIRD's route only", got)
	}
}

// Routes a previous version installed at another metric (0, before
// bgp.importMetric existed) are moved to the configured one when listed at
// adoption: one route per prefix afterwards, at the new metric.
func TestRouteTableMovesRoutesToItsMetric(t *testing.T) {
	ns := testns.New(t, "rtm")
	peer := testns.New(t, "rtmp")
	testns.Veth(t, ns, "eth0", "10.98.0.1/24", peer, "eth0", "10.98.0.2/24")
	ns.MustRun("ip", "route", "add", "10.244.3.0/24", "via", "10.98.0.2", "proto", "237")
	rt := NewRouteTable(ns.Handle(), 2000)
	got, err := rt.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !slices.Equal(got[netip.MustParsePrefix("10.244.3.0/24")], []netip.Addr{netip.MustParseAddr("10.98.0.2")}) {
		t.Fatalf("List = %v", got)
	}
	if out := ns.MustRun("ip", "route", "show", "proto", "237"); strings.TrimSpace(out) != "10.244.3.0/24 via 10.98.0.2 dev eth0 metric 2000" {
		t.Fatalf("kernel after adoption:\n%s\nwant the one route at metric 2000", out)
	}
}
