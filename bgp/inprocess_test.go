package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/arraynetworks/edgeagent/model"
)

// fakeRoutes is an in-memory RouteInstaller for tests that need no kernel.
type fakeRoutes struct {
	mu sync.Mutex
	m  map[netip.Prefix][]netip.Addr
}

func (f *fakeRoutes) Replace(p netip.Prefix, h []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[p] = h
	return nil
}

func (f *fakeRoutes) Delete(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, p)
	return nil
}

func (f *fakeRoutes) List() (map[netip.Prefix][]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[netip.Prefix][]netip.Addr{}
	for k, v := range f.m {
		out[k] = v
	}
	return out, nil
}

func (f *fakeRoutes) Metric() uint32 { return 1024 }

func (f *fakeRoutes) Preferred([]netip.Prefix) (map[netip.Prefix]string, error) { return nil, nil }

// The speaker in this process, without sockets (listenPort -1, no peers):
// the RIB side of Announce, status before any session, the importer with
// an IPv6 import CIDR and no IPv6 routes, and adoption bookkeeping.
func TestSpeakerInProcess(t *testing.T) {
	routes := &fakeRoutes{m: map[netip.Prefix][]netip.Addr{
		netip.MustParsePrefix("10.244.9.0/24"): {netip.MustParseAddr("192.0.2.1")},
	}}
	cfg := Config{
		ASN: 64512, RouterID: "192.0.2.100", ListenPort: -1, GracefulRestart: true, Import: true,
		ImportCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/48")},
		RestartTime: time.Second,
	}
	s, err := New(cfg, Options{Routes: routes, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Learned(); len(got) != 1 || got[0].Prefix.String() != "10.244.9.0/24" {
		t.Errorf("adopted = %+v", got)
	}
	if err := s.Announce(ctx, []model.VIPRoute{vip("10.200.0.10"), vip("10.200.0.11")}); err != nil {
		t.Fatal(err)
	}
	if adv := s.Advertised(); len(adv) != 0 {
		t.Errorf("advertised with no session up: %v", adv)
	}
	if n := s.Neighbors(); len(n) != 0 {
		t.Errorf("neighbors = %+v", n)
	}
	// No peer: after the restart time, the adopted route nobody announces
	// is removed, and the IPv6 import CIDR (no IPv6 table yet) does not
	// block the reconcile.
	poll.Until(t, 5*time.Second, "the adopted route reconciled away", func() (bool, string) {
		l := s.Learned()
		return len(l) == 0, fmt.Sprintf("learned %+v", l)
	})
	if err := s.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(ctx, nil); err == nil {
		t.Error("Announce after Stop must fail")
	}
}

// Discovered peers join the configured ones; the configuration wins on a
// shared address; nothing connects before the first Announce.
func TestSetDiscoveredPeers(t *testing.T) {
	s, err := New(Config{ASN: 64512, RouterID: "192.0.2.100", ListenPort: -1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conf := Peer{Address: netip.MustParseAddr("192.0.2.1"), Password: "x"}
	if err := s.Start(ctx, []Peer{conf}); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx, false)
	err = s.SetDiscoveredPeers(ctx, []Peer{
		{Address: netip.MustParseAddr("192.0.2.1"), Source: "node/a"},
		{Address: netip.MustParseAddr("192.0.2.2"), ASN: 65000, Source: "node/b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := s.Neighbors()
	if len(n) != 2 || n[0].Source != "config" || n[1].Source != "node/b" || n[1].ASN != 65000 || n[0].ASN != 64512 {
		t.Errorf("neighbors = %+v", n)
	}
	if err := s.SetDiscoveredPeers(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n := s.Neighbors(); len(n) != 1 || n[0].Address.String() != "192.0.2.1" {
		t.Errorf("after the node left: %+v", n)
	}
}

// A peer that never answers is not just "active": status says what that
// means, since GoBGP keeps its TCP connect errors to itself.
func TestSilentPeerHasAReason(t *testing.T) {
	cfg := Config{
		ASN: 64512, RouterID: "192.0.2.100", ListenPort: -1,
	}
	s, err := New(cfg, Options{Routes: &fakeRoutes{m: map[netip.Prefix][]netip.Addr{}}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Nothing listens on loopback port 1.
	if err := s.Start(ctx, []Peer{{Address: netip.MustParseAddr("127.0.0.1"), Port: 1}}); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx, false)
	if err := s.Announce(ctx, nil); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 15*time.Second, "the neighbor active or connect, with a lastError", func() (bool, string) {
		ns := s.Neighbors()
		return len(ns) == 1 && (ns[0].State == "active" || ns[0].State == "connect") && ns[0].LastError != "", fmt.Sprintf("neighbors %+v", ns)
	})
}
