package bgp

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

var (
	n1 = netip.MustParseAddr("10.99.0.11")
	n2 = netip.MustParseAddr("10.99.0.12")
	n3 = netip.MustParseAddr("10.99.0.13")
)

func TestSelectNextHops(t *testing.T) {
	calico := uint32(2147482623)
	cases := []struct {
		name  string
		cands []candidate
		want  []netip.Addr
	}{
		{"none", nil, nil},
		{"single calico block, huge local-pref", []candidate{{NextHop: n1, LocalPref: calico, Best: true}}, []netip.Addr{n1}},
		{"ecmp across equal peers", []candidate{
			{NextHop: n2, LocalPref: 100, Best: true}, {NextHop: n1, LocalPref: 100}, {NextHop: n3, LocalPref: 100}},
			[]netip.Addr{n1, n2, n3}},
		{"lower local-pref is not a multipath", []candidate{
			{NextHop: n1, LocalPref: 200, Best: true}, {NextHop: n2, LocalPref: 100}}, []netip.Addr{n1}},
		{"longer AS path is not a multipath", []candidate{
			{NextHop: n1, ASPathLen: 1, Best: true}, {NextHop: n2, ASPathLen: 2}}, []netip.Addr{n1}},
		{"different MED is not a multipath", []candidate{
			{NextHop: n1, MED: 0, Best: true}, {NextHop: n2, MED: 10}}, []netip.Addr{n1}},
		{"same next hop twice collapses", []candidate{{NextHop: n1, Best: true}, {NextHop: n1}}, []netip.Addr{n1}},
		{"unusable next hops are skipped", []candidate{
			{NextHop: netip.MustParseAddr("0.0.0.0"), Best: true}, {NextHop: n2}}, []netip.Addr{n2}},
	}
	for _, c := range cases {
		if got := selectNextHops(c.cands); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestImportable(t *testing.T) {
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/48")}
	for p, want := range map[string]bool{
		"10.244.1.0/24": true, "10.244.0.0/16": true, "10.244.0.0/15": false, "10.250.0.0/24": false,
		"0.0.0.0/0": false, "fd00:244:0:1::/64": true, "fd00::/8": false,
	} {
		if got := importable(netip.MustParsePrefix(p), cidrs); got != want {
			t.Errorf("importable(%s) = %v, want %v", p, got, want)
		}
	}
	if importable(netip.MustParsePrefix("10.244.1.0/24"), nil) {
		t.Error("empty importCIDRs must import nothing")
	}
}

func TestCandidateFromAPI(t *testing.T) {
	nlri := bgp.NewIPAddrPrefix(24, "10.244.1.0")
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0),
		bgp.NewPathAttributeNextHop("10.99.0.11"),
		bgp.NewPathAttributeLocalPref(2147482623),
		bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65001, 65002})}),
		bgp.NewPathAttributeMultiExitDisc(5),
	}
	p, err := apiutil.NewPath(nlri, false, attrs, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	p.NeighborIp = "10.99.0.11"
	p.Best = true
	c, ok := candidateFromAPI(p)
	want := candidate{Peer: n1, NextHop: n1, LocalPref: 2147482623, ASPathLen: 2, MED: 5, Best: true}
	if !ok || c != want {
		t.Errorf("got %+v %v, want %+v", c, ok, want)
	}
	p.NeighborIp = "<nil>" // our own path
	if _, ok := candidateFromAPI(p); ok {
		t.Error("a local path must not be a learned candidate")
	}
}

func TestDiffRoutes(t *testing.T) {
	pa, pb, pc := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("10.244.3.0/24")
	have := map[netip.Prefix][]netip.Addr{pa: {n1}, pb: {n2}, pc: {n3}}
	want := map[netip.Prefix][]netip.Addr{pa: {n1}, pb: {n1, n2}}
	d := diffRoutes(have, want, map[netip.Prefix]bool{pc: true})
	if len(d.Replace) != 1 || !slices.Equal(d.Replace[pb], []netip.Addr{n1, n2}) {
		t.Errorf("replace = %v", d.Replace)
	}
	if len(d.Delete) != 0 {
		t.Errorf("an adopted route must be kept until convergence: delete = %v", d.Delete)
	}
	d = diffRoutes(have, want, nil)
	if !slices.Equal(d.Delete, []netip.Prefix{pc}) {
		t.Errorf("delete = %v", d.Delete)
	}
}

func TestMD5Hint(t *testing.T) {
	prev := md5Counters{}
	if h := md5Hint(prev, md5Counters{failure: 1}, true); h == "" {
		t.Error("failure with a password must explain")
	}
	if h := md5Hint(prev, md5Counters{unexpected: 1}, false); h == "" {
		t.Error("unexpected signature without a password must explain")
	}
	if h := md5Hint(prev, md5Counters{failure: 1}, false); h != "" {
		t.Errorf("no password: failure counter is someone else's: %q", h)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestCollapseCIDRs(t *testing.T) {
	in := []netip.Prefix{mustPrefix("10.244.1.0/24"), mustPrefix("10.244.0.0/16"), mustPrefix("10.250.0.0/24"), mustPrefix("10.244.0.0/16"), mustPrefix("fd00::/8")}
	want := []netip.Prefix{mustPrefix("10.244.0.0/16"), mustPrefix("10.250.0.0/24"), mustPrefix("fd00::/8")}
	if got := collapseCIDRs(in); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
