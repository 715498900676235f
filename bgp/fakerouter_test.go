package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/arraynetworks/edgeagent/model"
)

// fakeRouter is an in-memory router: it records every change it is asked
// for, keeps the resulting peers and paths, and fails the calls that fail
// says should (a refused peer, an AddPath failing half way, a router that
// died).
type fakeRouter struct {
	mu sync.Mutex
	// calls are the changes asked for, in order: "start", "stop",
	// "add-peer 192.0.2.1 restarting=true", "delete-peer 192.0.2.1",
	// "disable-peer 192.0.2.1", "enable-peer 192.0.2.1",
	// "advertise 10.200.0.1/32", "withdraw 10.200.0.1/32".
	calls []string
	// fail is asked about every call (reads too, as "peers" and "learned
	// <cidr>"); a non-nil error fails it.
	fail    func(call string) error
	cfg     Config
	onEvent func(routerEvent)
	stopped bool
	peers   map[netip.Addr]fakePeer
	paths   map[netip.Prefix]string // attrKey
	// states are what Peers reports for configured peers (default: idle).
	states map[netip.Addr]peerState
	// outQ is reported on established peers, one less at each read.
	outQ    int
	learned map[netip.Prefix][]candidate
}

type fakePeer struct {
	Peer
	restarting, disabled bool
}

func newFakeRouter() *fakeRouter {
	return &fakeRouter{
		peers:   map[netip.Addr]fakePeer{},
		paths:   map[netip.Prefix]string{},
		states:  map[netip.Addr]peerState{},
		learned: map[netip.Prefix][]candidate{},
	}
}

// do records a change and says whether it fails; f.mu is held.
func (f *fakeRouter) do(format string, args ...any) error {
	c := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, c)
	if f.fail != nil {
		return f.fail(c)
	}
	return nil
}

func (f *fakeRouter) Start(_ context.Context, cfg Config, onEvent func(routerEvent)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.do("start"); err != nil {
		return err
	}
	f.cfg, f.onEvent = cfg, onEvent
	return nil
}

func (f *fakeRouter) Stop(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.do("stop"); err != nil {
		return err
	}
	f.stopped = true
	f.peers = map[netip.Addr]fakePeer{}
	return nil
}

func (f *fakeRouter) AddPeer(_ context.Context, p Peer, restarting bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.do("add-peer %s restarting=%v", p.Address, restarting); err != nil {
		return err
	}
	if _, ok := f.peers[p.Address]; ok {
		return fmt.Errorf("peer %s already exists", p.Address)
	}
	f.peers[p.Address] = fakePeer{Peer: p, restarting: restarting}
	return nil
}

func (f *fakeRouter) DeletePeer(_ context.Context, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.do("delete-peer %s", a); err != nil {
		return err
	}
	if _, ok := f.peers[a]; !ok {
		return fmt.Errorf("peer %s not found", a)
	}
	delete(f.peers, a)
	delete(f.states, a)
	return nil
}

func (f *fakeRouter) setDisabled(a netip.Addr, op string, disabled bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.do("%s %s", op, a); err != nil {
		return err
	}
	p, ok := f.peers[a]
	if !ok {
		return fmt.Errorf("peer %s not found", a)
	}
	p.disabled = disabled
	f.peers[a] = p
	return nil
}

func (f *fakeRouter) DisablePeer(_ context.Context, a netip.Addr, _ string) error {
	return f.setDisabled(a, "disable-peer", true)
}

func (f *fakeRouter) EnablePeer(_ context.Context, a netip.Addr) error {
	return f.setDisabled(a, "enable-peer", false)
}

func (f *fakeRouter) AdvertisePath(_ context.Context, r model.VIPRoute) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.do("advertise %s", r.Prefix); err != nil {
		return err
	}
	// The translation GoBGP's shim does, with its errors.
	if _, err := vipAttrs(r); err != nil {
		return err
	}
	f.paths[r.Prefix] = attrKey(r)
	return nil
}

func (f *fakeRouter) WithdrawPath(_ context.Context, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.do("withdraw %s", p); err != nil {
		return err
	}
	delete(f.paths, p)
	return nil
}

func (f *fakeRouter) Peers(context.Context) ([]peerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail("peers"); err != nil {
			return nil, err
		}
	}
	out := make([]peerState, 0, len(f.peers))
	for a := range f.peers {
		st, ok := f.states[a]
		if !ok {
			st = peerState{Address: a, State: "idle"}
		}
		if st.State == "established" && f.outQ > 0 {
			st.OutQ = uint32(f.outQ)
			f.outQ--
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b peerState) int { return a.Address.Compare(b.Address) })
	return out, nil
}

func (f *fakeRouter) Learned(_ context.Context, cidr netip.Prefix, fn func(netip.Prefix, []candidate)) error {
	f.mu.Lock()
	if f.fail != nil {
		if err := f.fail("learned " + cidr.String()); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	type dest struct {
		p     netip.Prefix
		cands []candidate
	}
	var ds []dest
	for p, cs := range f.learned {
		if cidr.Bits() <= p.Bits() && cidr.Contains(p.Addr()) {
			ds = append(ds, dest{p, slices.Clone(cs)})
		}
	}
	f.mu.Unlock()
	for _, d := range ds {
		fn(d.p, d.cands)
	}
	return nil
}

// setState makes Peers report a's session in state st.
func (f *fakeRouter) setState(a netip.Addr, st peerState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st.Address = a
	f.states[a] = st
}

// takeCalls returns the changes asked for since the last call.
func (f *fakeRouter) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

func (f *fakeRouter) setFail(fn func(call string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

func (f *fakeRouter) peer(a netip.Addr) (fakePeer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.peers[a]
	return p, ok
}

func (f *fakeRouter) pathKeys() map[netip.Prefix]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[netip.Prefix]string, len(f.paths))
	for p, k := range f.paths {
		out[p] = k
	}
	return out
}

// failOn fails every call that starts with one of prefixes.
func failOn(err error, prefixes ...string) func(string) error {
	return func(c string) error {
		for _, p := range prefixes {
			if strings.HasPrefix(c, p) {
				return err
			}
		}
		return nil
	}
}

var (
	peerA = netip.MustParseAddr("192.0.2.1")
	peerB = netip.MustParseAddr("192.0.2.2")
	peer6 = netip.MustParseAddr("2001:db8::1")
)

// testSpeaker is a started speaker on a fake router and a fake clock. The
// supervisor's tick and the initial hold are an hour, so nothing happens
// behind the test's back: tests call onTick, holdExpired and onPeerState
// themselves.
type testSpeaker struct {
	*Speaker
	r   *fakeRouter
	clk *testingclock.FakeClock
	// md5 is what the kernel's MD5 counters read.
	md5 *atomic.Pointer[md5Counters]
}

func startTestSpeaker(t *testing.T, cfg Config, routes RouteInstaller, peers ...Peer) testSpeaker {
	t.Helper()
	if cfg.RouterID == "" {
		cfg.RouterID = "192.0.2.100"
	}
	if cfg.InitialHold == 0 {
		cfg.InitialHold = time.Hour
	}
	fr := newFakeRouter()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s, err := newSpeaker(cfg, Options{Routes: routes}, fr, slog.New(slog.DiscardHandler), clk)
	if err != nil {
		t.Fatal(err)
	}
	s.tick = time.Hour
	md5 := &atomic.Pointer[md5Counters]{}
	md5.Store(&md5Counters{})
	s.readMD5 = func() md5Counters { return *md5.Load() }
	if err := s.Start(context.Background(), peers); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background(), false) })
	return testSpeaker{s, fr, clk, md5}
}

// neighbor is the speaker's view of one neighbor.
func (ts testSpeaker) neighbor(t *testing.T, a netip.Addr) Neighbor {
	t.Helper()
	for _, n := range ts.Neighbors() {
		if n.Address == a {
			return n
		}
	}
	t.Fatalf("no neighbor %s in %+v", a, ts.Neighbors())
	return Neighbor{}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
