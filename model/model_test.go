package model

import (
	"net/netip"
	"slices"
	"testing"
)

func TestAnnounceable(t *testing.T) {
	a := netip.MustParseAddr
	up := Real{IP: a("10.244.1.10"), Port: 80, Weight: 1, Healthy: true}
	down := Real{IP: a("10.244.1.11"), Port: 80, Weight: 1}
	draining := Real{IP: a("10.244.1.12"), Port: 80, Weight: 1, Healthy: true, Terminating: true}
	lp := uint32(200)
	s := State{Services: []VirtualService{
		{Namespace: "a", Route: "x", VIP: a("10.200.0.1"), Port: 80, Protocol: TCP, Reals: []Real{down}},
		{Namespace: "a", Route: "x", VIP: a("10.200.0.1"), Port: 443, Protocol: TCP, Reals: []Real{up}, BGP: Advertisement{Communities: []string{"1:1"}, LocalPref: &lp}},
		{Namespace: "b", Route: "y", VIP: a("10.200.0.2"), Port: 80, Protocol: TCP, Reals: []Real{down, draining}},
		{Namespace: "c", Route: "z", VIP: a("fd00::1"), Port: 80, Protocol: TCP, Reals: []Real{{IP: a("fd00::10"), Port: 80, Healthy: true}}, BGP: Advertisement{Communities: []string{"2:2", "1:1"}}},
		{Namespace: "c", Route: "w", VIP: a("fd00::1"), Port: 81, Protocol: TCP, Reals: []Real{{IP: a("fd00::11"), Port: 80, Healthy: true}}, BGP: Advertisement{Communities: []string{"3:3"}}},
	}}
	got := s.Announceable()
	if len(got) != 2 {
		t.Fatalf("got %+v, want 10.200.0.1/32 and fd00::1/128 (10.200.0.2 has no eligible real)", got)
	}
	if got[0].Prefix.String() != "10.200.0.1/32" || *got[0].Attrs.LocalPref != 200 || !slices.Equal(got[0].Attrs.Communities, []string{"1:1"}) {
		t.Errorf("first route %+v", got[0])
	}
	if got[1].Prefix.String() != "fd00::1/128" || !slices.Equal(got[1].Attrs.Communities, []string{"1:1", "2:2", "3:3"}) {
		t.Errorf("second route %+v (communities of services sharing a VIP merge)", got[1])
	}
}

func TestPoolAdmits(t *testing.T) {
	p := Pool{CIDR: netip.MustParsePrefix("10.200.0.0/24"), Namespaces: []string{"shop"}}
	cases := []struct {
		ns   string
		ip   string
		want bool
	}{
		{"shop", "10.200.0.5", true},
		{"other", "10.200.0.5", false},
		{"shop", "10.200.1.5", false},
		{"shop", "::ffff:10.200.0.5", true},
	}
	for _, c := range cases {
		if got := p.Admits(c.ns, netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("Admits(%s, %s) = %v", c.ns, c.ip, got)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	lp := uint32(1)
	s := State{Services: []VirtualService{{Reals: []Real{{Weight: 1}}, BGP: Advertisement{LocalPref: &lp, Communities: []string{"1:1"}}}}}
	c := s.Clone()
	c.Services[0].Reals[0].Weight = 9
	*c.Services[0].BGP.LocalPref = 9
	c.Services[0].BGP.Communities[0] = "9:9"
	if s.Services[0].Reals[0].Weight != 1 || *s.Services[0].BGP.LocalPref != 1 || s.Services[0].BGP.Communities[0] != "1:1" {
		t.Fatal("Clone shares memory with the original")
	}
}

// TestKeyFormat pins the key's form: it names kernel objects, metrics and
// status entries, so both dataplane backends and the reports rely on it.
func TestKeyFormat(t *testing.T) {
	for _, tc := range []struct {
		vs   VirtualService
		want string
	}{
		{VirtualService{Namespace: "ns-1", Route: "route.a", Protocol: UDP, Port: 65535}, "ns-1/route.a/UDP/65535"},
		{VirtualService{Namespace: "a", Route: "x", Protocol: TCP, Port: 80}, "a/x/TCP/80"},
	} {
		if got := tc.vs.Key(); got != tc.want {
			t.Errorf("Key() = %q, want %q", got, tc.want)
		}
	}
}
