package bgp

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// failingRoutes is a RouteInstaller whose writes fail for the prefixes in
// fail.
type failingRoutes struct {
	fakeRoutes
	mu   sync.Mutex
	fail map[netip.Prefix]bool
}

func (f *failingRoutes) Replace(p netip.Prefix, h []netip.Addr) error {
	f.mu.Lock()
	bad := f.fail[p]
	f.mu.Unlock()
	if bad {
		return errors.New("netlink: file exists")
	}
	return f.fakeRoutes.Replace(p, h)
}

func (f *failingRoutes) Delete(p netip.Prefix) error {
	f.mu.Lock()
	bad := f.fail[p]
	f.mu.Unlock()
	if bad {
		return errors.New("netlink: no such process")
	}
	return f.fakeRoutes.Delete(p)
}

func (f *failingRoutes) Preferred(ps []netip.Prefix) (map[netip.Prefix]string, error) {
	out := map[netip.Prefix]string{}
	for _, p := range ps {
		if p == pfxA {
			out[p] = "bird metric 32 via 10.99.0.11"
		}
	}
	return out, nil
}

var (
	pfxA     = netip.MustParsePrefix("10.244.1.0/24")
	pfxB     = netip.MustParsePrefix("10.244.2.0/24")
	pfxStale = netip.MustParsePrefix("10.244.77.0/24")
	pfxOut   = netip.MustParsePrefix("10.250.0.0/24")
)

// testImporter is an importer on a fake router, a fake kernel and a fake
// clock, with the gate open and want peers wanted.
func testImporter(t *testing.T, fr *fakeRouter, routes RouteInstaller, want int) (*importer, *testingclock.FakeClock) {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	im := newImporter(fr, routes, []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.1.0/24")},
		time.Minute, func() (bool, int) { return true, want }, clk, discardLogger())
	if err := im.adopt(); err != nil {
		t.Fatal(err)
	}
	return im, clk
}

func kernel(r *fakeRoutes) map[netip.Prefix][]netip.Addr {
	m, _ := r.List()
	return m
}

// Learned paths inside importCIDRs reach the kernel with their ECMP next
// hops; others never do; accepted counts the paths per peer; a withdrawn
// path's route goes.
func TestImporterInstallsWhatTheRIBHas(t *testing.T) {
	fr := newFakeRouter()
	fr.learned[pfxA] = []candidate{{Peer: n1, NextHop: n1, LocalPref: 100, Best: true}, {Peer: n2, NextHop: n2, LocalPref: 100}}
	fr.learned[pfxB] = []candidate{{Peer: n2, NextHop: n2, Best: true}}
	fr.learned[pfxOut] = []candidate{{Peer: n3, NextHop: n3, Best: true}}
	fr.learned[netip.MustParsePrefix("10.244.3.0/24")] = []candidate{{Peer: n3, NextHop: netip.MustParseAddr("0.0.0.0"), Best: true}}
	routes := &fakeRoutes{m: map[netip.Prefix][]netip.Addr{}}
	im, _ := testImporter(t, fr, routes, 0)
	if err := im.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix][]netip.Addr{pfxA: {n1, n2}, pfxB: {n2}}
	if got := kernel(routes); len(got) != 2 || !slices.Equal(got[pfxA], want[pfxA]) || !slices.Equal(got[pfxB], want[pfxB]) {
		t.Errorf("kernel = %v, want %v", got, want)
	}
	if acc := im.acceptedCounts(); acc[n1] != 1 || acc[n2] != 2 || acc[n3] != 1 {
		t.Errorf("accepted = %v (paths inside importCIDRs, per peer)", acc)
	}
	delete(fr.learned, pfxB)
	if err := im.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kernel(routes); len(got) != 1 || got[pfxB] != nil {
		t.Errorf("withdrawn route left in the kernel: %v", got)
	}
	l := im.learned()
	if len(l) != 1 || l[0].Prefix != pfxA || !slices.Equal(l[0].NextHops, []netip.Addr{n1, n2}) || l[0].Metric != 1024 {
		t.Errorf("learned = %+v", l)
	}
}

// Adopted routes stay until the RIB has converged: every wanted peer
// established with its End-of-RIB in, or the restart time passed.
func TestImporterKeepsAdoptedRoutesUntilConverged(t *testing.T) {
	for _, c := range []struct {
		name     string
		converge func(fr *fakeRouter, clk *testingclock.FakeClock)
	}{
		{"end-of-rib", func(fr *fakeRouter, _ *testingclock.FakeClock) {
			fr.setState(peerA, peerState{State: "established"})
		}},
		{"restart-time", func(_ *fakeRouter, clk *testingclock.FakeClock) { clk.Step(time.Minute) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			fr := newFakeRouter()
			fr.peers[peerA] = fakePeer{Peer: Peer{Address: peerA}}
			fr.learned[pfxA] = []candidate{{Peer: peerA, NextHop: n1, Best: true}}
			routes := &fakeRoutes{m: map[netip.Prefix][]netip.Addr{pfxA: {n2}, pfxStale: {n1}}}
			im, clk := testImporter(t, fr, routes, 1)
			if l := im.learned(); len(l) != 2 {
				t.Fatalf("adopted = %+v", l)
			}
			// Up, but End-of-RIB still to come.
			fr.setState(peerA, peerState{State: "established", EndOfRIBPending: true})
			if err := im.reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			got := kernel(routes)
			if !slices.Equal(got[pfxA], []netip.Addr{n1}) || got[pfxStale] == nil {
				t.Fatalf("before convergence: %v (want the announced route updated, the stale one kept)", got)
			}
			clk.Step(time.Minute - time.Second)
			if err := im.reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			if kernel(routes)[pfxStale] == nil {
				t.Fatal("stale route removed before the RIB converged")
			}
			c.converge(fr, clk)
			if err := im.reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			if got := kernel(routes); got[pfxStale] != nil || got[pfxA] == nil {
				t.Errorf("after convergence: %v", got)
			}
		})
	}
}

// With the gate closed or a wanted peer missing, the RIB has not
// converged.
func TestRIBConverged(t *testing.T) {
	fr := newFakeRouter()
	fr.peers[peerA] = fakePeer{}
	fr.setState(peerA, peerState{State: "established"})
	for _, c := range []struct {
		open   bool
		wanted int
		fail   bool
		want   bool
	}{
		{true, 1, false, true}, {false, 1, false, false}, {true, 2, false, false}, {true, 1, true, false},
	} {
		im := newImporter(fr, &fakeRoutes{m: map[netip.Prefix][]netip.Addr{}}, nil, time.Minute,
			func() (bool, int) { return c.open, c.wanted }, testingclock.NewFakeClock(time.Now()), discardLogger())
		fr.setFail(nil)
		if c.fail {
			fr.setFail(failOn(errors.New("dead"), "peers"))
		}
		if got := im.ribConverged(ctx); got != c.want {
			t.Errorf("%+v: converged = %v", c, got)
		}
	}
}

// A kernel write that fails leaves the bookkeeping as it was, so the next
// run retries exactly that route; a failed RIB read deletes nothing.
func TestImporterKernelFailures(t *testing.T) {
	fr := newFakeRouter()
	fr.learned[pfxA] = []candidate{{Peer: n1, NextHop: n1, Best: true}}
	fr.learned[pfxB] = []candidate{{Peer: n1, NextHop: n1, Best: true}}
	routes := &failingRoutes{fakeRoutes: fakeRoutes{m: map[netip.Prefix][]netip.Addr{}}, fail: map[netip.Prefix]bool{pfxB: true}}
	im, _ := testImporter(t, fr, routes, 0)
	if err := im.reconcile(ctx); err == nil || !strings.Contains(err.Error(), "file exists") {
		t.Fatalf("reconcile: %v", err)
	}
	if l := im.learned(); len(l) != 1 || l[0].Prefix != pfxA || l[0].ShadowedBy != "bird metric 32 via 10.99.0.11" {
		t.Errorf("learned = %+v", l)
	}
	routes.mu.Lock()
	routes.fail = map[netip.Prefix]bool{pfxA: true}
	routes.mu.Unlock()
	delete(fr.learned, pfxA)
	if err := im.reconcile(ctx); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Fatalf("reconcile: %v", err)
	}
	if got := kernel(&routes.fakeRoutes); len(got) != 2 {
		t.Errorf("kernel = %v: want pfxB installed now and pfxA still there (its delete failed)", got)
	}
	routes.mu.Lock()
	routes.fail = nil
	routes.mu.Unlock()
	fr.setFail(failOn(errors.New("dead"), "learned"))
	if err := im.reconcile(ctx); err == nil {
		t.Fatal("a failed RIB read must be an error")
	}
	if got := kernel(&routes.fakeRoutes); len(got) != 2 {
		t.Errorf("a failed RIB read changed the kernel: %v", got)
	}
	fr.setFail(nil)
	if err := im.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kernel(&routes.fakeRoutes); len(got) != 1 || got[pfxB] == nil {
		t.Errorf("kernel = %v", got)
	}
}

// Only End-of-RIB and learned prefixes inside importCIDRs wake the
// importer.
func TestImporterWakesOnRelevantPaths(t *testing.T) {
	im, _ := testImporter(t, newFakeRouter(), &fakeRoutes{m: map[netip.Prefix][]netip.Addr{}}, 0)
	woken := func() bool {
		select {
		case <-im.wake:
			return true
		default:
			return false
		}
	}
	for _, c := range []struct {
		ev   routerEvent
		want bool
	}{
		{routerEvent{Kind: eventLearned, Prefixes: []netip.Prefix{pfxOut}}, false},
		{routerEvent{Kind: eventLearned, Prefixes: []netip.Prefix{pfxOut, pfxA}}, true},
		{routerEvent{Kind: eventLearned, EndOfRIB: true}, true},
	} {
		im.onLearned(c.ev)
		if got := woken(); got != c.want {
			t.Errorf("%+v: woken = %v", c.ev, got)
		}
	}
}
