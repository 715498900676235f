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

	rt := NewRouteTable(ns.Handle())
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
