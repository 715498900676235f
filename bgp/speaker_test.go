package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"k8s.io/utils/clock"

	"github.com/arraynetworks/edgeagent/model"
)

// Unit tests of the speaker's desired-state logic on the fake router: the
// gate, the reconcilers' failure paths, the backoff, Stop, a dead router.
// The behaviour against real peers is proven by peering_test.go,
// restart_test.go and test/bgpe2e.

var ctx = context.Background()

func wantCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("router calls:\n got  %q\n want %q", got, want)
	}
}

// Nothing reaches the router's peers before the first Announce; that
// Announce puts the VIPs in the RIB first, then adds the peers with the
// graceful-restart Restart bits. Later Announces touch only the paths.
func TestGateOpensOnFirstAnnounce(t *testing.T) {
	ts := startTestSpeaker(t, Config{GracefulRestart: true}, nil, Peer{Address: peerB}, Peer{Address: peerA})
	wantCalls(t, ts.r.takeCalls(), "start")
	n := ts.neighbor(t, peerA)
	if n.State != "idle" || n.LastError != reasonGateClosed {
		t.Errorf("before the first Announce: %+v", n)
	}
	ts.onTick(ctx, md5Counters{}) // the tick does not open the gate
	wantCalls(t, ts.r.takeCalls())

	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.1")}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "advertise 10.200.0.1/32",
		"add-peer 192.0.2.1 restarting=true", "add-peer 192.0.2.2 restarting=true")
	if n := ts.neighbor(t, peerA); n.LastError != "" {
		t.Errorf("configured peer still explains the gate: %+v", n)
	}

	// A peer that joins later is not restarting: we never had a session
	// with it to restart.
	if err := ts.SetPeers(ctx, []Peer{{Address: peerA}, {Address: peerB}, {Address: peer6}}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "add-peer 2001:db8::1 restarting=false")

	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.1"), vip("10.200.0.2")}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "advertise 10.200.0.2/32")
	// The hold timer firing after the gate opened changes nothing.
	ts.holdExpired(ctx)
	wantCalls(t, ts.r.takeCalls())
}

// Without graceful restart the OPEN carries no Restart bits.
func TestGateWithoutGracefulRestart(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	ts.r.takeCalls()
	if err := ts.Announce(ctx, nil); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "add-peer 192.0.2.1 restarting=false")
}

// No Announce within InitialHold: the supervisor opens the sessions anyway.
func TestGateOpensAfterInitialHold(t *testing.T) {
	ts := startTestSpeaker(t, Config{InitialHold: 20 * time.Millisecond, GracefulRestart: true}, nil, Peer{Address: peerA})
	poll.Until(t, 10*time.Second, "the peer added after InitialHold", func() (bool, string) {
		p, ok := ts.r.peer(peerA)
		return ok && p.restarting, fmt.Sprintf("%+v", p)
	})
}

// AddPeer refused: the other peer is added, Announce still succeeds (the
// failure is the peer's, not the VIPs'), status says why, and the next
// tick retries it, still as a restarting peer.
func TestAddPeerFailsAndIsRetried(t *testing.T) {
	ts := startTestSpeaker(t, Config{GracefulRestart: true}, nil, Peer{Address: peerA}, Peer{Address: peerB})
	ts.r.takeCalls()
	ts.r.setFail(failOn(errors.New("refused"), "add-peer 192.0.2.1"))
	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.1")}); err != nil {
		t.Fatalf("a refused peer failed Announce: %v", err)
	}
	if _, ok := ts.r.peer(peerB); !ok {
		t.Error("the other peer was not added")
	}
	n := ts.neighbor(t, peerA)
	if n.State != "idle" || !strings.Contains(n.LastError, "add peer 192.0.2.1") || !strings.Contains(n.LastError, "refused") {
		t.Errorf("refused peer: %+v", n)
	}
	ts.r.takeCalls()
	ts.onTick(ctx, md5Counters{})
	wantCalls(t, ts.r.takeCalls(), "add-peer 192.0.2.1 restarting=true")

	ts.r.setFail(nil)
	ts.onTick(ctx, md5Counters{})
	wantCalls(t, ts.r.takeCalls(), "add-peer 192.0.2.1 restarting=true")
	if n := ts.neighbor(t, peerA); n.LastError != "" {
		t.Errorf("added peer keeps the old error: %+v", n)
	}
	ts.onTick(ctx, md5Counters{})
	wantCalls(t, ts.r.takeCalls()) // converged: nothing to do
}

// SetPeers reports a refused peer and invalid or duplicated ones, and
// applies the rest.
func TestSetPeersReportsEachProblem(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil)
	if err := ts.Announce(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ts.r.takeCalls()
	ts.r.setFail(failOn(errors.New("refused"), "add-peer 192.0.2.2"))
	err := ts.SetPeers(ctx, []Peer{
		{Address: peerA}, {Address: peerA, Source: "node/x"}, {Address: peerB},
		{Address: netip.MustParseAddr("192.0.2.3"), HoldTime: time.Second},
	})
	for _, want := range []string{"192.0.2.1 (node/x): listed twice", "add peer 192.0.2.2 (asn 64512): refused", "holdTime 1s must be at least 3s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SetPeers error %v: want it to say %q", err, want)
		}
	}
	wantCalls(t, ts.r.takeCalls(), "add-peer 192.0.2.1 restarting=false", "add-peer 192.0.2.2 restarting=false")
	if p, ok := ts.r.peer(peerA); !ok || p.Source != "config" {
		t.Errorf("the first entry must win: %+v", p)
	}
}

// AddPath fails half way: the paths before are advertised, the error names
// the ones that failed, and the next Announce sends only those.
func TestAddPathFailsHalfWay(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	ts.r.takeCalls()
	n := 0
	ts.r.setFail(func(c string) error {
		if strings.HasPrefix(c, "advertise") {
			if n++; n > 2 {
				return errors.New("rib full")
			}
		}
		return nil
	})
	routes := []model.VIPRoute{vip("10.200.0.1"), vip("10.200.0.2"), vip("10.200.0.3"), vip("10.200.0.4")}
	err := ts.Announce(ctx, routes)
	if err == nil || !strings.Contains(err.Error(), "advertise 10.200.0.3/32: rib full") || !strings.Contains(err.Error(), "advertise 10.200.0.4/32: rib full") {
		t.Fatalf("Announce: %v", err)
	}
	if got := ts.r.pathKeys(); len(got) != 2 {
		t.Errorf("router paths = %v, want the first two", got)
	}
	ts.r.setState(peerA, peerState{State: "established"})
	ts.onTick(ctx, md5Counters{})
	if adv := ts.Advertised(); len(adv) != 2 || !adv["10.200.0.1/32"] || !adv["10.200.0.2/32"] {
		t.Errorf("Advertised = %v, want only what the router took", adv)
	}
	ts.r.setFail(nil)
	ts.r.takeCalls()
	if err := ts.Announce(ctx, routes); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "advertise 10.200.0.3/32", "advertise 10.200.0.4/32")
	if err := ts.Announce(ctx, routes); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls()) // idempotent
}

// A VIP whose new attributes are bad keeps advertising its old ones; the
// error names it; the others go ahead. A withdrawal that fails is retried.
func TestBadAttributesKeepThePreviousPath(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil)
	good := vip("10.200.0.1")
	good.Attrs.Communities = []string{"64512:1"}
	if err := ts.Announce(ctx, []model.VIPRoute{good, vip("10.200.0.2")}); err != nil {
		t.Fatal(err)
	}
	before := ts.r.pathKeys()[good.Prefix]
	bad := vip("10.200.0.1")
	bad.Attrs.Communities = []string{"70000:1"}
	other := vip("10.200.0.2")
	other.Attrs.LocalPref = lp(300)
	ts.r.takeCalls()
	err := ts.Announce(ctx, []model.VIPRoute{bad, other})
	if err == nil || !strings.Contains(err.Error(), `advertise 10.200.0.1/32: community "70000:1"`) {
		t.Fatalf("Announce: %v", err)
	}
	wantCalls(t, ts.r.takeCalls(), "advertise 10.200.0.1/32", "advertise 10.200.0.2/32")
	if got := ts.r.pathKeys()[good.Prefix]; got != before {
		t.Errorf("the VIP's path changed to %q, want its old attributes %q", got, before)
	}

	ts.r.setFail(failOn(errors.New("busy"), "withdraw"))
	if err := ts.Announce(ctx, []model.VIPRoute{other}); err == nil || !strings.Contains(err.Error(), "withdraw 10.200.0.1/32: busy") {
		t.Fatalf("Announce: %v", err)
	}
	ts.r.setFail(nil)
	ts.r.takeCalls()
	if err := ts.Announce(ctx, []model.VIPRoute{other}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "withdraw 10.200.0.1/32")
}

// A changed peer is deleted and re-added (its session alone resets); an
// unchanged one is not touched; a removed one is deleted. A replaced peer
// starts without the hold-down its old settings earned.
func TestPeerConfigChange(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA}, Peer{Address: peerB})
	if err := ts.Announce(ctx, nil); err != nil {
		t.Fatal(err)
	}
	failSessions(ts, peerB, backoffAfter)
	if n := ts.neighbor(t, peerB); !strings.Contains(n.LastError, "backing off") {
		t.Fatalf("peer not held down: %+v", n)
	}
	ts.r.takeCalls()
	if err := ts.SetPeers(ctx, []Peer{{Address: peerA}, {Address: peerB, ASN: 65001}}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "delete-peer 192.0.2.2", "add-peer 192.0.2.2 restarting=false")
	if p, _ := ts.r.peer(peerB); p.ASN != 65001 || p.disabled {
		t.Errorf("replaced peer: %+v", p)
	}
	if n := ts.neighbor(t, peerB); n.LastError != "" || n.ASN != 65001 {
		t.Errorf("replaced peer keeps its old hold-down: %+v", n)
	}
	ts.onTick(ctx, md5Counters{})
	wantCalls(t, ts.r.takeCalls()) // no stale hold-down released on the new peer

	if err := ts.SetPeers(ctx, []Peer{{Address: peerB, ASN: 65001}}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "delete-peer 192.0.2.1")
	if ns := ts.Neighbors(); len(ns) != 1 || ns[0].Address != peerB {
		t.Errorf("neighbors = %+v", ns)
	}
}

// A replacement whose delete fails keeps the old peer and is retried.
func TestPeerReplaceDeleteFails(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	if err := ts.Announce(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ts.r.takeCalls()
	ts.r.setFail(failOn(errors.New("busy"), "delete-peer"))
	err := ts.SetPeers(ctx, []Peer{{Address: peerA, Password: "x"}})
	if err == nil || !strings.Contains(err.Error(), "delete peer 192.0.2.1: busy") {
		t.Fatalf("SetPeers: %v", err)
	}
	wantCalls(t, ts.r.takeCalls(), "delete-peer 192.0.2.1")
	if p, _ := ts.r.peer(peerA); p.Password != "" {
		t.Errorf("router peer = %+v", p)
	}
	ts.r.setFail(nil)
	ts.onTick(ctx, md5Counters{})
	wantCalls(t, ts.r.takeCalls(), "delete-peer 192.0.2.1", "add-peer 192.0.2.1 restarting=false")
	if p, _ := ts.r.peer(peerA); p.Password != "x" {
		t.Errorf("router peer after the retry = %+v", p)
	}
}

// failSessions makes addr's session fail n times before Established.
func failSessions(ts testSpeaker, addr netip.Addr, n int) {
	for range n {
		ts.onPeerState(ctx, addr, "active")
		ts.onPeerState(ctx, addr, "opensent")
		ts.onPeerState(ctx, addr, "idle")
	}
}

// The hold-downs of a peer that keeps failing: none for the first two
// failures, then 10 s doubling to 5 min; each ends on time (EnablePeer at
// the first tick after it); Established starts the count over.
func TestBackoffSchedule(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	if err := ts.Announce(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ts.r.takeCalls()
	want := map[int]time.Duration{1: 0, 2: 0, 3: 10 * time.Second, 4: 20 * time.Second, 7: 160 * time.Second, 8: 5 * time.Minute, 50: 5 * time.Minute}
	for n := 1; n <= 50; n++ {
		failSessions(ts, peerA, 1)
		ts.mu.Lock()
		hold := ts.sessions[peerA].holdUntil.Sub(ts.clk.Now())
		ts.mu.Unlock()
		if hold < 0 {
			hold = 0
		}
		if d, ok := want[n]; ok && hold != d {
			t.Errorf("after %d failures: held %v, want %v", n, hold, d)
		}
		if hold == 0 {
			wantCalls(t, ts.r.takeCalls())
			continue
		}
		wantCalls(t, ts.r.takeCalls(), "disable-peer 192.0.2.1")
		if p, _ := ts.r.peer(peerA); !p.disabled {
			t.Fatalf("failure %d: router peer not disabled", n)
		}
		nb := ts.neighbor(t, peerA)
		until := ts.clk.Now().Add(hold).UTC().Format(time.RFC3339)
		if !strings.Contains(nb.LastError, "backing off until "+until) {
			t.Errorf("failure %d: lastError %q, want the end of the hold-down %s", n, nb.LastError, until)
		}
		ts.clk.Step(hold - time.Second)
		ts.onTick(ctx, md5Counters{})
		wantCalls(t, ts.r.takeCalls()) // not yet
		ts.clk.Step(time.Second)
		ts.onTick(ctx, md5Counters{})
		wantCalls(t, ts.r.takeCalls(), "enable-peer 192.0.2.1")
		if strings.Contains(ts.neighbor(t, peerA).LastError, "backing off") {
			t.Errorf("failure %d: still backing off after the hold-down", n)
		}
	}
	ts.onPeerState(ctx, peerA, "opensent")
	ts.onPeerState(ctx, peerA, "established")
	failSessions(ts, peerA, backoffAfter)
	ts.mu.Lock()
	hold := ts.sessions[peerA].holdUntil.Sub(ts.clk.Now())
	ts.mu.Unlock()
	if hold != backoffBase {
		t.Errorf("after Established and %d new failures: held %v, want %v", backoffAfter, hold, backoffBase)
	}
}

// A hold-down the router refuses to apply is retried on the next tick.
func TestHoldDownRetried(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	if err := ts.Announce(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ts.r.setFail(failOn(errors.New("busy"), "disable-peer"))
	failSessions(ts, peerA, backoffAfter)
	ts.r.setFail(nil)
	ts.r.takeCalls()
	ts.onTick(ctx, md5Counters{})
	wantCalls(t, ts.r.takeCalls(), "disable-peer 192.0.2.1")
}

// A session that flaps: Established clears the last error and makes the
// VIPs count as advertised; losing it (no failure before Established, so
// no backoff) takes them out again; a dropped state event is caught up by
// the tick.
func TestSessionFlap(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.1")}); err != nil {
		t.Fatal(err)
	}
	ts.onRouterEvent(routerEvent{Kind: eventPeerError, Peer: peerA, Error: "received notification: bad peer AS"})
	if n := ts.neighbor(t, peerA); !strings.Contains(n.LastError, "bad peer AS") {
		t.Errorf("neighbor = %+v", n)
	}
	ts.r.setState(peerA, peerState{State: "established", Since: ts.clk.Now().Add(-90 * time.Second), LocalAddress: netip.MustParseAddr("192.0.2.100")})
	ts.onPeerState(ctx, peerA, "established")
	n := ts.neighbor(t, peerA)
	if n.LastError != "" || n.State != "established" || n.Uptime != 90*time.Second || n.Advertised != 1 || n.LocalAddress.String() != "192.0.2.100" {
		t.Errorf("established: %+v", n)
	}
	if adv := ts.Advertised(); !adv["10.200.0.1/32"] {
		t.Errorf("Advertised = %v", adv)
	}
	for range 5 {
		ts.onPeerState(ctx, peerA, "idle")
		ts.onPeerState(ctx, peerA, "established")
	}
	ts.r.setState(peerA, peerState{State: "active"})
	ts.onPeerState(ctx, peerA, "active")
	if adv := ts.Advertised(); len(adv) != 0 {
		t.Errorf("Advertised with the session down = %v", adv)
	}
	if n := ts.neighbor(t, peerA); n.LastError != reasonNoAnswer {
		t.Errorf("active without a reason: %+v", n)
	}
	ts.mu.Lock()
	failures := ts.sessions[peerA].failures
	ts.mu.Unlock()
	if failures != 0 {
		t.Errorf("losing an established session counted %d failures", failures)
	}

	// The state event is lost; the tick reads the state.
	ts.r.setState(peerA, peerState{State: "established"})
	ts.onTick(ctx, md5Counters{})
	if adv := ts.Advertised(); !adv["10.200.0.1/32"] {
		t.Errorf("Advertised after the resync = %v", adv)
	}
}

// State events reach the supervisor through the router's callback.
func TestStateEventsReachTheSupervisor(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.1")}); err != nil {
		t.Fatal(err)
	}
	ts.r.onEvent(routerEvent{Kind: eventPeerState, Peer: peerA, State: "established"})
	poll.Until(t, 10*time.Second, "the VIP advertised once the session is up", func() (bool, string) {
		adv := ts.Advertised()
		return adv["10.200.0.1/32"], fmt.Sprint(adv)
	})
}

// Rising kernel MD5 counters explain a peer that never connects.
func TestMD5Explained(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA, Password: "pw"})
	if err := ts.Announce(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ts.md5.Store(&md5Counters{failure: 3})
	ts.onTick(ctx, md5Counters{failure: 1})
	if n := ts.neighbor(t, peerA); !strings.Contains(n.LastError, "TCP MD5 signature mismatch") {
		t.Errorf("neighbor = %+v", n)
	}
	ts.onPeerState(ctx, peerA, "established")
	if n := ts.neighbor(t, peerA); n.LastError != "" {
		t.Errorf("established session keeps the MD5 hint: %+v", n)
	}
}

// Stop without withdraw leaves the router alone (peers see a graceful
// restart when the process ends); nothing runs afterwards.
func TestStopWithoutWithdraw(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.1")}); err != nil {
		t.Fatal(err)
	}
	ts.r.takeCalls()
	if err := ts.Stop(ctx, false); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls())
	if err := ts.Announce(ctx, nil); err == nil {
		t.Error("Announce after Stop must fail")
	}
	if err := ts.SetPeers(ctx, nil); err != nil {
		t.Errorf("SetPeers after Stop: %v", err)
	}
	ts.onTick(ctx, md5Counters{})
	ts.holdExpired(ctx)
	wantCalls(t, ts.r.takeCalls())
	if err := ts.Stop(ctx, true); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
	wantCalls(t, ts.r.takeCalls())
}

// Stop with withdraw takes every VIP out, waits for the updates to leave,
// then stops the router (the Cease).
func TestStopWithWithdraw(t *testing.T) {
	ts := startTestSpeaker(t, Config{}, nil, Peer{Address: peerA})
	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.2"), vip("10.200.0.1")}); err != nil {
		t.Fatal(err)
	}
	ts.r.setState(peerA, peerState{State: "established"})
	ts.r.mu.Lock()
	ts.r.outQ = 3
	ts.r.mu.Unlock()
	ts.r.takeCalls()
	if err := ts.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, ts.r.takeCalls(), "withdraw 10.200.0.1/32", "withdraw 10.200.0.2/32", "stop")
	ts.r.mu.Lock()
	left := ts.r.outQ
	ts.r.mu.Unlock()
	if left != 0 {
		t.Errorf("stopped with %d updates still queued", left)
	}
}

// The router dies: every call fails. Announce says so, the neighbors say
// so, Stop reports it, and nothing panics or hangs.
func TestRouterDies(t *testing.T) {
	routes := &fakeRoutes{m: map[netip.Prefix][]netip.Addr{netip.MustParsePrefix("10.244.1.0/24"): {n1}}}
	ts := startTestSpeaker(t, Config{Import: true, ImportCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}, routes, Peer{Address: peerA})
	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.1")}); err != nil {
		t.Fatal(err)
	}
	dead := errors.New("bgp server gone")
	ts.r.setFail(func(string) error { return dead })
	if err := ts.Announce(ctx, []model.VIPRoute{vip("10.200.0.2")}); !errors.Is(err, dead) {
		t.Errorf("Announce: %v", err)
	}
	if n := ts.neighbor(t, peerA); !strings.Contains(n.LastError, "bgp router: bgp server gone") {
		t.Errorf("neighbor = %+v", n)
	}
	if err := ts.imp.reconcile(ctx); !errors.Is(err, dead) {
		t.Errorf("import: %v", err)
	}
	if l := ts.Learned(); len(l) != 1 {
		t.Errorf("a failed RIB read removed learned routes: %+v", l)
	}
	ts.onTick(ctx, md5Counters{})
	if err := ts.Stop(ctx, true); !errors.Is(err, dead) || !strings.Contains(err.Error(), "stop bgp") {
		t.Errorf("Stop: %v", err)
	}
}

// The router cannot start: Start says why and the speaker stays down.
func TestRouterStartFails(t *testing.T) {
	fr := newFakeRouter()
	fr.fail = failOn(errors.New("port 179 in use"), "start")
	s, err := newSpeaker(Config{RouterID: "192.0.2.100"}, Options{}, fr, discardLogger(), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, []Peer{{Address: peerA}}); err == nil || !strings.Contains(err.Error(), "port 179 in use") {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Announce(ctx, nil); err == nil {
		t.Error("Announce on a speaker that failed to start must fail")
	}
	if err := s.Start(ctx, nil); err == nil {
		t.Error("a second Start must fail")
	}
	if err := s.Stop(ctx, true); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// Bad global settings and an invalid peer at Start are refused.
func TestStartRefusesBadSettings(t *testing.T) {
	for _, cfg := range []Config{
		{RouterID: "fd00::1"}, {RouterID: "x"}, {ListenPort: 70000}, {ListenAddresses: []string{"nope"}},
	} {
		if _, err := newSpeaker(cfg, Options{}, newFakeRouter(), discardLogger(), clock.RealClock{}); err == nil {
			t.Errorf("%+v: want an error", cfg)
		}
	}
	s, err := newSpeaker(Config{RouterID: "192.0.2.100"}, Options{}, newFakeRouter(), discardLogger(), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, []Peer{{Address: netip.MustParseAddr("224.0.0.1")}}); err == nil {
		t.Error("a multicast peer must fail Start")
	}
}
