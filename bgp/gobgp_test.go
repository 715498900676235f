package bgp

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The GoBGP shim's readings of GoBGP's API values.

func TestPeerStateFromAPI(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	full := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: "::ffff:10.99.0.11"},
		State: &api.PeerState{
			SessionState: api.PeerState_ESTABLISHED, OutQ: 4,
			Messages: &api.Messages{Received: &api.Message{Update: 7}, Sent: &api.Message{Update: 9}},
		},
		Transport:       &api.Transport{LocalAddress: "10.99.0.1"},
		Timers:          &api.Timers{State: &api.TimersState{Uptime: timestamppb.New(since)}},
		GracefulRestart: &api.GracefulRestart{Enabled: true},
		AfiSafis: []*api.AfiSafi{
			{State: &api.AfiSafiState{Received: 3}, MpGracefulRestart: &api.MpGracefulRestart{State: &api.MpGracefulRestartState{Received: true, EndOfRibReceived: true}}},
			{State: &api.AfiSafiState{Received: 2}, MpGracefulRestart: &api.MpGracefulRestart{State: &api.MpGracefulRestartState{Received: true}}},
		},
	}
	got, ok := peerStateFromAPI(full)
	want := peerState{
		Address: netip.MustParseAddr("10.99.0.11"), State: "established", OutQ: 4, UpdatesIn: 7, UpdatesOut: 9,
		Received: 5, LocalAddress: netip.MustParseAddr("10.99.0.1"), GracefulRestart: true, Since: since, EndOfRIBPending: true,
	}
	if !ok || got != want {
		t.Errorf("established peer:\n got  %+v\n want %+v", got, want)
	}

	// Down: no local address or uptime even if GoBGP still has them.
	full.State.SessionState = api.PeerState_ACTIVE
	if got, _ := peerStateFromAPI(full); got.State != "active" || got.LocalAddress.IsValid() || !got.Since.IsZero() {
		t.Errorf("active peer: %+v", got)
	}
	if got, ok := peerStateFromAPI(&api.Peer{Conf: &api.PeerConf{NeighborAddress: "10.99.0.12"}}); !ok || got.State != "idle" {
		t.Errorf("peer without state: %+v %v", got, ok)
	}
	for _, p := range []*api.Peer{nil, {}, {Conf: &api.PeerConf{NeighborAddress: "bogus"}}} {
		if _, ok := peerStateFromAPI(p); ok {
			t.Errorf("%v: want not ok", p)
		}
	}
}

func TestStateWord(t *testing.T) {
	for st, want := range map[api.PeerState_SessionState]string{
		api.PeerState_UNKNOWN: "idle", api.PeerState_IDLE: "idle", api.PeerState_CONNECT: "connect", api.PeerState_ACTIVE: "active",
		api.PeerState_OPENSENT: "opensent", api.PeerState_OPENCONFIRM: "openconfirm", api.PeerState_ESTABLISHED: "established",
	} {
		if got := stateWord(st); got != want {
			t.Errorf("stateWord(%v) = %q, want %q", st, got, want)
		}
	}
}

func TestPeerEventFromAPI(t *testing.T) {
	state := func(typ api.WatchEventResponse_PeerEvent_Type, addr, confAddr string) *api.WatchEventResponse_PeerEvent {
		ev := &api.WatchEventResponse_PeerEvent{Type: typ, Peer: &api.Peer{
			State: &api.PeerState{NeighborAddress: addr, SessionState: api.PeerState_OPENSENT}}}
		if confAddr != "" {
			ev.Peer.Conf = &api.PeerConf{NeighborAddress: confAddr}
		}
		return ev
	}
	ev, ok := peerEventFromAPI(state(api.WatchEventResponse_PeerEvent_STATE, "10.99.0.11", ""))
	if !ok || ev.Kind != eventPeerState || ev.Peer != n1 || ev.State != "opensent" {
		t.Errorf("state event: %+v %v", ev, ok)
	}
	if ev, ok := peerEventFromAPI(state(api.WatchEventResponse_PeerEvent_STATE, "", "10.99.0.12")); !ok || ev.Peer != n2 {
		t.Errorf("address from the config: %+v %v", ev, ok)
	}
	for _, e := range []*api.WatchEventResponse_PeerEvent{
		nil, {Type: api.WatchEventResponse_PeerEvent_STATE},
		state(api.WatchEventResponse_PeerEvent_INIT, "10.99.0.11", ""),
		state(api.WatchEventResponse_PeerEvent_STATE, "", ""),
	} {
		if ev, ok := peerEventFromAPI(e); ok {
			t.Errorf("%v: want no event, got %+v", e, ev)
		}
	}
}

func learnedPath(t *testing.T, neighbor, prefix string) *api.Path {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	path, err := apiutil.NewPath(bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String()), false,
		[]bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeNextHop(neighbor)}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	path.NeighborIp = neighbor
	return path
}

func TestLearnedEventFromAPI(t *testing.T) {
	own := learnedPath(t, "10.99.0.11", "10.200.0.1/32")
	own.NeighborIp = "<nil>"
	ev, ok := learnedEventFromAPI([]*api.Path{own, learnedPath(t, "10.99.0.11", "10.244.1.0/24"), learnedPath(t, "10.99.0.12", "10.250.0.0/24")})
	if !ok || ev.Kind != eventLearned || ev.EndOfRIB || !slices.Equal(ev.Prefixes, []netip.Prefix{pfxA, pfxOut}) {
		t.Errorf("learned paths: %+v %v", ev, ok)
	}
	eor := &api.Path{NeighborIp: "10.99.0.11"}
	if ev, ok := learnedEventFromAPI([]*api.Path{eor}); !ok || !ev.EndOfRIB {
		t.Errorf("End-of-RIB: %+v %v", ev, ok)
	}
	if ev, ok := learnedEventFromAPI([]*api.Path{own}); ok {
		t.Errorf("our own path is not learned: %+v", ev)
	}
}

// GoBGP's log lines that say why a session failed become lastError; the
// others say nothing.
func TestPeerErrorFromLog(t *testing.T) {
	notif := bgp.NewBGPNotificationMessage(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_BAD_PEER_AS, nil)
	for _, c := range []struct {
		msg    string
		fields log.Fields
		want   string
	}{
		{"received notification", log.Fields{"Code": uint8(bgp.BGP_ERROR_CEASE), "Subcode": uint8(bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN), "Communicated-Reason": "maintenance"},
			"received notification: code 6(cease) subcode 2(administrative shutdown) (maintenance)"},
		{"sent notification", log.Fields{"Data": notif}, "sent notification: code 2(open) subcode 2(bad peer as)"},
		{"sent notification", log.Fields{"Data": "raw"}, "sent notification: raw"},
		{"Peer Down", log.Fields{"Reason": "hold-timer-expired"}, "session down: hold-timer-expired"},
		{"hold timer expired", nil, "hold timer expired"},
		{"graceful restart timer expired", nil, "graceful restart timer expired: the peer did not come back in time"},
		{"Session will be reset due to malformed BGP update message", log.Fields{"Error": "bad attr"}, "malformed message: bad attr"},
		{"Peer Up", nil, ""},
	} {
		if got := peerErrorFromLog(c.msg, c.fields); got != c.want {
			t.Errorf("%s %v: %q, want %q", c.msg, c.fields, got, c.want)
		}
	}
}

// The logger hands peer failures to the speaker whatever the log level,
// and maps GoBGP's levels onto slog's.
func TestGoBGPLogger(t *testing.T) {
	var buf strings.Builder
	var got []string
	g := &gobgpLogger{
		l:         slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		onPeerErr: func(peer, reason string) { got = append(got, peer+": "+reason) },
	}
	g.Info("Peer Down", log.Fields{"Topic": "Peer", "Key": "10.99.0.11", "Reason": "admin-down"})
	g.Info("Add a peer configuration", log.Fields{"Topic": "Peer", "Key": "10.99.0.11"})
	g.Debug("hold timer expired", log.Fields{"Topic": "Peer", "Key": "10.99.0.12"})
	g.Warn("warned", nil)
	g.Error("failed", log.Fields{"Topic": "Peer", "Key": "10.99.0.12"})
	g.Fatal("fatal", nil)
	if want := []string{"10.99.0.11: session down: admin-down", "10.99.0.12: hold timer expired"}; !slices.Equal(got, want) {
		t.Errorf("peer errors = %q, want %q", got, want)
	}
	out := buf.String()
	for _, want := range []string{`level=INFO msg="Peer Down" component=gobgp key=10.99.0.11 reason=admin-down topic=Peer`, "level=WARN msg=warned", "level=ERROR msg=failed", "level=ERROR msg=fatal"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Add a peer configuration") || strings.Contains(out, "hold timer expired") {
		t.Errorf("GoBGP's routine messages must be debug:\n%s", out)
	}
	if g.GetLevel() != log.InfoLevel {
		t.Error("GoBGP must not log per message")
	}
}

func TestDeriveRouterID(t *testing.T) {
	for _, c := range []struct {
		listen []string
		peers  []Peer
		want   string
	}{
		{[]string{"::", "0.0.0.0", "10.99.0.1"}, nil, "10.99.0.1"},
		{nil, []Peer{{Address: peer6}, {Address: peerA, LocalAddress: netip.MustParseAddr("192.0.2.50")}}, "192.0.2.50"},
		{nil, []Peer{{Address: netip.MustParseAddr("127.0.0.1")}}, "127.0.0.1"},
	} {
		if got, err := deriveRouterID(c.listen, c.peers); err != nil || got != c.want {
			t.Errorf("%v %v: %q %v, want %q", c.listen, c.peers, got, err, c.want)
		}
	}
}
