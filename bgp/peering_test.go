package bgp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/model"
)

func bedPeers(bed *testbed.Bed, withFRR bool) []Peer {
	ps := []Peer{{Address: netip.MustParseAddr(bed.Env["CALICO1_IP"])}}
	if withFRR {
		ps = append(ps, Peer{Address: netip.MustParseAddr(bed.Env["FRR_IP"])})
	}
	return ps
}

func bedConfig() Config {
	return Config{
		ASN:             64512,
		GracefulRestart: true,
		Import:          true,
		ImportCIDRs:     []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
	}
}

// edgeRoutes is `ip route show proto 237` in the edge namespace.
func edgeRoutes(t testing.TB, bed *testbed.Bed) string {
	out, err := bed.Exec("edge", "ip", "route", "show", "proto", "237")
	if err != nil {
		t.Fatalf("ip route: %v %s", err, out)
	}
	return out
}

// birdRouteSince extracts the time BIRD recorded for the route from the
// edge (changes only when the route is re-sent).
func birdRouteSince(bed *testbed.Bed, prefix string) string {
	out, _ := bed.BirdRoute(1, prefix)
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "[Global_"); i >= 0 {
			return strings.TrimSpace(l[i:])
		}
	}
	return ""
}

func TestPeeringWithCalicoAndFRR(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{})
	edge := bed.Env["EDGE_IP"]
	calico := bed.Env["CALICO1_IP"]
	frr := bed.Env["FRR_IP"]
	d := startSpeakerd(t, bed, bedConfig(), bedPeers(bed, true))

	// Sessions wait for the first announcement.
	if n := d.neighbor(calico); n.State != "idle" || !strings.Contains(n.LastError, "waiting for the first announcement") {
		t.Errorf("before the first Announce: %+v", n)
	}
	d.announce(vip("10.200.0.10"))
	waitEstablished(t, d, calico, frr)

	poll.Until(t, 10*time.Second, "BIRD to have the VIP via the edge", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return ok && strings.Contains(out, "via "+edge), out
	})
	poll.Until(t, 10*time.Second, "FRR to have the VIP via the edge", func() (bool, string) {
		out, ok := bed.FRRRoute("10.200.0.10/32")
		return ok && strings.Contains(out, edge), out
	})
	poll.Until(t, 10*time.Second, "the calico block in the edge kernel", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return strings.Contains(out, "10.244.1.0/24 via "+calico), out
	})
	if out := edgeRoutes(t, bed); strings.Contains(out, "10.250.0.0") {
		t.Errorf("FRR's 10.250.0.0/24 is outside importCIDRs but was installed:\n%s", out)
	}
	poll.Until(t, 10*time.Second, "status counts", func() (bool, string) {
		c, f := d.neighbor(calico), d.neighbor(frr)
		ok := c.Received == 1 && c.Accepted == 1 && c.Advertised == 1 && f.Received == 1 && f.Accepted == 0 &&
			c.Uptime >= 0 && c.GracefulRestart && c.LocalAddress.String() == edge && c.LastError == ""
		return ok, fmt.Sprintf("calico %+v frr %+v", c, f)
	})
	learned := d.call(speakerdReq{Op: "learned"}).Learned
	if len(learned) != 1 || learned[0].Prefix.String() != "10.244.1.0/24" || len(learned[0].NextHops) != 1 || learned[0].NextHops[0].String() != calico {
		t.Errorf("learned = %+v", learned)
	}
	if adv := d.call(speakerdReq{Op: "advertised"}).Advertised; !adv["10.200.0.10/32"] || len(adv) != 1 {
		t.Errorf("advertised = %v", adv)
	}

	// A second VIP does not re-send the first, nor reset the session.
	since := birdRouteSince(bed, "10.200.0.10/32")
	sessionState, sessionSince := bed.BirdSession(1, bed.EdgeProtocol())
	d.announce(vip("10.200.0.10"), vip("10.200.0.11"))
	poll.Until(t, 10*time.Second, "BIRD to have the second VIP", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.11/32")
		return ok, out
	})
	if got := birdRouteSince(bed, "10.200.0.10/32"); got != since {
		t.Errorf("adding a VIP re-sent another: %q -> %q", since, got)
	}

	// Communities and local-pref reach the peer.
	lp := uint32(300)
	r := vip("10.200.0.11")
	r.Attrs.Communities = []string{"64512:42"}
	r.Attrs.LargeCommunities = []string{"64512:1:2"}
	r.Attrs.LocalPref = &lp
	d.announce(vip("10.200.0.10"), r)
	poll.Until(t, 10*time.Second, "BIRD to see the new attributes", func() (bool, string) {
		out, _ := bed.BirdRoute(1, "10.200.0.11/32")
		return strings.Contains(out, "(64512,42)") && strings.Contains(out, "(64512, 1, 2)") && strings.Contains(out, "local_pref: 300"), out
	})
	if got := birdRouteSince(bed, "10.200.0.10/32"); got != since {
		t.Errorf("changing one VIP's attributes re-sent another: %q -> %q", since, got)
	}
	if st, since := bed.BirdSession(1, bed.EdgeProtocol()); !testbed.SameBirdSession(sessionState, sessionSince, st, since) {
		t.Errorf("VIP changes touched the session: %s since %v -> %s since %v", sessionState, sessionSince, st, since)
	}

	// A learned route withdrawn by its peer leaves the kernel, and comes
	// back with the announcement.
	if out, err := bed.Birdc(1, "disable", "static1"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	poll.Until(t, 10*time.Second, "the withdrawn block to leave the kernel", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return !strings.Contains(out, "10.244.1.0/24"), out
	})
	if out, err := bed.Birdc(1, "enable", "static1"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	poll.Until(t, 10*time.Second, "the block back in the kernel", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return strings.Contains(out, "10.244.1.0/24 via "+calico), out
	})

	// Metrics are exported per peer.
	m := d.call(speakerdReq{Op: "metrics"}).Metrics
	for _, want := range []string{
		fmt.Sprintf(`edgeagent_bgp_session_up{peer="%s"} 1`, calico),
		fmt.Sprintf(`edgeagent_bgp_prefixes_advertised{peer="%s"} 2`, frr),
		fmt.Sprintf(`edgeagent_bgp_prefixes_received{peer="%s"} 1`, calico),
		fmt.Sprintf(`edgeagent_bgp_updates_total{direction="sent",peer="%s"}`, calico),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}

	// Removing a peer leaves the other session alone.
	protoState, protoSince := bed.BirdSession(1, bed.EdgeProtocol())
	if r := d.call(speakerdReq{Op: "peers", Peers: bedPeers(bed, false)}); r.Error != "" {
		t.Fatal(r.Error)
	}
	poll.Until(t, 10*time.Second, "FRR to lose the session", func() (bool, string) {
		s := bed.FRRNeighborState()
		return s != "Established", s
	})
	if st, since := bed.BirdSession(1, bed.EdgeProtocol()); !testbed.SameBirdSession(protoState, protoSince, st, since) {
		t.Errorf("removing FRR touched the BIRD session: %s since %v -> %s since %v", protoState, protoSince, st, since)
	}

	// Withdrawing a VIP removes it; the learned route stays.
	d.announce(vip("10.200.0.11"))
	poll.Until(t, 10*time.Second, "BIRD to drop the withdrawn VIP", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return !ok, out
	})
	if out := edgeRoutes(t, bed); !strings.Contains(out, "10.244.1.0/24") {
		t.Errorf("learned route lost after a VIP withdrawal:\n%s", out)
	}

	// Withdraw-on-exit: every VIP goes before the session closes.
	if r := d.call(speakerdReq{Op: "stop", Withdraw: true}); r.Error != "" {
		t.Fatal(r.Error)
	}
	poll.Until(t, 10*time.Second, "BIRD to drop every VIP", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.11/32")
		return !ok, out
	})
}

// A prefix two calico nodes announce alike is installed with both as next
// hops; when one node's session goes, the other remains.
func TestECMPAcrossPeers(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{CalicoNodes: 2, WithoutFRR: true, SharedPrefix: "10.244.200.0/24"})
	c1, c2 := bed.Env["CALICO1_IP"], bed.Env["CALICO2_IP"]
	// calico2 is passive on our side: its BIRD opens the session.
	peers := []Peer{{Address: netip.MustParseAddr(c1)}, {Address: netip.MustParseAddr(c2), Passive: true}}
	d := startSpeakerd(t, bed, bedConfig(), peers)
	d.announce(vip("10.200.0.10"))
	waitEstablished(t, d, c1, c2)
	shared := func() string {
		out, _ := bed.Exec("edge", "ip", "route", "show", "10.244.200.0/24", "proto", "237")
		return out
	}
	poll.Until(t, 15*time.Second, "the shared prefix via both nodes", func() (bool, string) {
		out := shared()
		return strings.Contains(out, "nexthop via "+c1) && strings.Contains(out, "nexthop via "+c2), out
	})
	poll.Until(t, 10*time.Second, "each node's own block via that node", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return strings.Contains(out, "10.244.1.0/24 via "+c1) && strings.Contains(out, "10.244.2.0/24 via "+c2), out
	})
	bed.StopBird(2, false) // orderly: BIRD sends a Cease, no graceful restart
	poll.Until(t, 15*time.Second, "the shared prefix via the remaining node only", func() (bool, string) {
		out := shared()
		return strings.Contains(out, "via "+c1) && !strings.Contains(out, c2), out
	})
	poll.Until(t, 10*time.Second, "calico2's block removed", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return !strings.Contains(out, "10.244.2.0/24"), out
	})
}

// Routes a previous run left in the kernel are adopted, not flushed: the
// one still announced stays throughout, the one nobody announces goes once
// the RIB has converged (peer up, End-of-RIB received).
func TestAdoptsKernelRoutesAtStart(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{WithoutFRR: true})
	calico := bed.Env["CALICO1_IP"]
	for _, p := range []string{"10.244.1.0/24", "10.244.77.0/24"} {
		if out, err := bed.Exec("edge", "ip", "route", "add", p, "via", calico, "proto", "237"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	d := startSpeakerd(t, bed, bedConfig(), bedPeers(bed, false))
	if l := d.call(speakerdReq{Op: "learned"}).Learned; len(l) != 2 {
		t.Errorf("adopted at start: %+v", l)
	}
	if out := edgeRoutes(t, bed); !strings.Contains(out, "10.244.77.0/24") {
		t.Errorf("an adopted route was flushed before the RIB converged:\n%s", out)
	}
	d.announce()
	waitEstablished(t, d, calico)
	poll.Until(t, 15*time.Second, "the stale adopted route removed", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return !strings.Contains(out, "10.244.77.0/24"), out
	})
	if out := edgeRoutes(t, bed); !strings.Contains(out, "10.244.1.0/24 via "+calico) {
		t.Errorf("the announced route is gone:\n%s", out)
	}
}

// listenPort -1: no listener, the session is opened from our side only.
func TestNoListen(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{WithoutFRR: true})
	cfg := bedConfig()
	cfg.ListenPort = -1
	d := startSpeakerd(t, bed, cfg, bedPeers(bed, false))
	d.announce(vip("10.200.0.10"))
	waitEstablished(t, d, bed.Env["CALICO1_IP"])
	out, err := bed.Exec("edge", "ss", "-Hltn", "sport", "= :179")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("listenPort -1 but something listens on 179: %v %q", err, out)
	}
}

// An upstream router over eBGP: the VIP arrives with our AS in the path and
// next hop = the edge; its routes inside importCIDRs are installed.
func TestEBGPWithFRR(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{FRRASN: 65001, FRRNetworks: "10.244.250.0/24 10.250.0.0/24"})
	frr, edge := bed.Env["FRR_IP"], bed.Env["EDGE_IP"]
	peers := []Peer{{Address: netip.MustParseAddr(frr), ASN: 65001}}
	d := startSpeakerd(t, bed, bedConfig(), peers)
	d.announce(vip("10.200.0.10"))
	waitEstablished(t, d, frr)
	poll.Until(t, 10*time.Second, "FRR to have the VIP from AS 64512 via the edge", func() (bool, string) {
		out, ok := bed.FRRRoute("10.200.0.10/32")
		return ok && strings.Contains(out, "64512") && strings.Contains(out, edge), out
	})
	poll.Until(t, 10*time.Second, "FRR's route inside importCIDRs in the kernel", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return strings.Contains(out, "10.244.250.0/24 via "+frr) && !strings.Contains(out, "10.250.0.0"), out
	})
}

// IPv6: a /128 VIP over an IPv6 session, next hop = the edge's IPv6
// address; an IPv6 route inside importCIDRs installed in the kernel.
func TestIPv6WithFRR(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{IPv6: true, FRRNetworks6: "fd00:244:0:1::/64 fd00:250::/64"})
	frr6, edge6 := bed.Env["FRR_IP6"], bed.Env["EDGE_IP6"]
	cfg := bedConfig()
	cfg.ImportCIDRs = append(cfg.ImportCIDRs, netip.MustParsePrefix("fd00:244::/48"))
	peers := []Peer{{Address: netip.MustParseAddr(frr6)}}
	d := startSpeakerd(t, bed, cfg, peers)
	d.announce(model.VIPRoute{Prefix: netip.MustParsePrefix("fd00:200::10/128")}, vip("10.200.0.10"))
	waitEstablished(t, d, frr6)
	poll.Until(t, 10*time.Second, "FRR to have the /128 via the edge", func() (bool, string) {
		out, ok := bed.FRRRoute("fd00:200::10/128")
		return ok && strings.Contains(out, edge6), out
	})
	if out, ok := bed.FRRRoute("10.200.0.10/32"); ok {
		t.Errorf("an IPv4 VIP went over the IPv6 session:\n%s", out)
	}
	poll.Until(t, 10*time.Second, "the IPv6 route in the kernel", func() (bool, string) {
		out, _ := bed.Exec("edge", "ip", "-6", "route", "show", "proto", "237")
		return strings.Contains(out, "fd00:244:0:1::/64 via "+frr6) && !strings.Contains(out, "fd00:250"), out
	})
	if n := d.neighbor(frr6); n.Advertised != 1 || n.Accepted != 1 || n.Received != 2 {
		t.Errorf("neighbor = %+v", n)
	}
}
