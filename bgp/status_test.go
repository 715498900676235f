package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/arraynetworks/edgeagent/model"
)

func TestNeighborView(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	local := netip.MustParseAddr("192.0.2.100")
	cfgLocal := netip.MustParseAddr("192.0.2.99")
	base := neighborView{
		wanted: []Peer{
			{Address: peerB, ASN: 65001, Source: "node/b", LocalAddress: cfgLocal},
			{Address: peerA, ASN: 64512, Source: "config"},
			{Address: peer6, ASN: 64512, Source: "config"},
		},
		sessions: map[netip.Addr]session{peerA: {}, peerB: {}, peer6: {}},
		gateOpen: true,
		v4:       3, v6: 1,
		accepted: map[netip.Addr]int{peerA: 2},
		states: map[netip.Addr]peerState{
			peerA: {Address: peerA, State: "established", Received: 4, UpdatesIn: 5, UpdatesOut: 6, LocalAddress: local, GracefulRestart: true, Since: now.Add(-time.Minute)},
			peerB: {Address: peerB, State: "active", LocalAddress: local, Since: now.Add(-time.Minute)},
			peer6: {Address: peer6, State: "established"},
		},
		now: now,
	}
	ns := base.neighbors()
	want := []Neighbor{
		{Address: peerA, ASN: 64512, State: "established", Uptime: time.Minute, Received: 4, Accepted: 2, Advertised: 3,
			LocalAddress: local, GracefulRestart: true, Source: "config", UpdatesReceived: 5, UpdatesSent: 6},
		{Address: peerB, ASN: 65001, State: "active", LocalAddress: cfgLocal, LastError: reasonNoAnswer, Source: "node/b"},
		{Address: peer6, ASN: 64512, State: "established", Advertised: 1, Source: "config"},
	}
	if len(ns) != len(want) {
		t.Fatalf("neighbors = %+v", ns)
	}
	for i := range want {
		if ns[i] != want[i] {
			t.Errorf("neighbor %d:\n got  %+v\n want %+v", i, ns[i], want[i])
		}
	}

	closed := base
	closed.gateOpen, closed.sessions, closed.states = false, nil, nil
	for _, n := range closed.neighbors() {
		if n.State != "idle" || n.LastError != reasonGateClosed {
			t.Errorf("gate closed: %+v", n)
		}
	}

	refused := base
	refused.sessions = map[netip.Addr]session{peerB: {}, peer6: {}}
	refused.states = map[netip.Addr]peerState{}
	refused.peerErrs = map[netip.Addr]string{peerA: "add peer 192.0.2.1 (asn 64512): refused"}
	if n := refused.neighbor(refused.wanted[1]); n.State != "idle" || n.LastError != "add peer 192.0.2.1 (asn 64512): refused" {
		t.Errorf("refused peer: %+v", n)
	}

	dead := base
	dead.states, dead.routerErr = nil, errors.New("gone")
	if n := dead.neighbor(dead.wanted[1]); n.State != "idle" || n.LastError != "bgp router: gone" {
		t.Errorf("router down: %+v", n)
	}

	held := base
	held.sessions = map[netip.Addr]session{peerB: {lastError: "received notification: bad peer AS", md5Hint: "TCP MD5: x", holdUntil: now.Add(time.Minute)}}
	n := held.neighbor(held.wanted[0])
	if want := "TCP MD5: x; received notification: bad peer AS (backing off until 2026-01-02T03:05:05Z)"; n.LastError != want {
		t.Errorf("lastError = %q, want %q", n.LastError, want)
	}
}

// The metrics follow the neighbors; the UPDATE counters stay monotonic
// across a session reset; a removed peer's series go.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA}, Peer{Address: peerB})
	if err := reg.Register(ts.met); err != nil {
		t.Fatal(err)
	}
	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.1"), vip("10.200.0.2")}); err != nil {
		t.Fatal(err)
	}
	ts.r.setState(peerA, peerState{State: "established", Received: 3, UpdatesIn: 10, UpdatesOut: 4})
	ts.r.setState(peerB, peerState{State: "active"})
	gather := func(want string) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "edgeagent_bgp_session_up", "edgeagent_bgp_updates_total", "edgeagent_bgp_prefixes_advertised"); err != nil {
			t.Error(err)
		}
	}
	gather(`
# HELP edgeagent_bgp_prefixes_advertised VIP prefixes advertised to the peer.
# TYPE edgeagent_bgp_prefixes_advertised gauge
edgeagent_bgp_prefixes_advertised{peer="192.0.2.1"} 2
edgeagent_bgp_prefixes_advertised{peer="192.0.2.2"} 0
# HELP edgeagent_bgp_session_up 1 when the BGP session with the peer is established.
# TYPE edgeagent_bgp_session_up gauge
edgeagent_bgp_session_up{peer="192.0.2.1"} 1
edgeagent_bgp_session_up{peer="192.0.2.2"} 0
# HELP edgeagent_bgp_updates_total BGP UPDATE messages exchanged with the peer.
# TYPE edgeagent_bgp_updates_total counter
edgeagent_bgp_updates_total{direction="received",peer="192.0.2.1"} 10
edgeagent_bgp_updates_total{direction="received",peer="192.0.2.2"} 0
edgeagent_bgp_updates_total{direction="sent",peer="192.0.2.1"} 4
edgeagent_bgp_updates_total{direction="sent",peer="192.0.2.2"} 0
`)
	// The session resets: GoBGP's counters start over.
	ts.r.setState(peerA, peerState{State: "established", UpdatesIn: 2, UpdatesOut: 1})
	if err := ts.SetPeers(ctx, []Peer{{Address: peerA}}); err != nil {
		t.Fatal(err)
	}
	gather(`
# HELP edgeagent_bgp_prefixes_advertised VIP prefixes advertised to the peer.
# TYPE edgeagent_bgp_prefixes_advertised gauge
edgeagent_bgp_prefixes_advertised{peer="192.0.2.1"} 2
# HELP edgeagent_bgp_session_up 1 when the BGP session with the peer is established.
# TYPE edgeagent_bgp_session_up gauge
edgeagent_bgp_session_up{peer="192.0.2.1"} 1
# HELP edgeagent_bgp_updates_total BGP UPDATE messages exchanged with the peer.
# TYPE edgeagent_bgp_updates_total counter
edgeagent_bgp_updates_total{direction="received",peer="192.0.2.1"} 12
edgeagent_bgp_updates_total{direction="sent",peer="192.0.2.1"} 5
`)
}
