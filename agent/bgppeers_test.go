package agent

import (
	"context"
	"net/netip"
	"testing"

	"github.com/arraynetworks/edgeagent/bgp"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/watcher"
)

// discoveringSpeaker records the discovered peers it is given.
type discoveringSpeaker struct {
	fakeSpeaker
	peers     []bgp.Peer
	setCalled int
}

func (d *discoveringSpeaker) SetDiscoveredPeers(_ context.Context, ps []bgp.Peer) error {
	d.peers, d.setCalled = ps, d.setCalled+1
	return nil
}

func TestNodePeersReachTheSpeaker(t *testing.T) {
	cfg := testConfig()
	cfg.BGP.NodePeers = &config.NodePeers{LabelSelector: "edge=peer", ASN: 65000}
	src := &fakeSource{synced: true, snap: watcher.Snapshot{NodePeers: []watcher.NodePeer{
		{Node: "calico1", Address: netip.MustParseAddr("10.99.0.11")},
	}}}
	sp := &discoveringSpeaker{}
	a := New(Options{Config: cfg, Source: src, Speaker: sp})
	if err := a.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := bgp.Peer{Address: netip.MustParseAddr("10.99.0.11"), ASN: 65000, Source: "node/calico1"}
	if len(sp.peers) != 1 || sp.peers[0] != want {
		t.Errorf("discovered peers = %+v, want %+v", sp.peers, want)
	}

	// Without bgp.nodePeers, Nodes are not peers.
	cfg.BGP.NodePeers = nil
	sp2 := &discoveringSpeaker{}
	if err := New(Options{Config: cfg, Source: src, Speaker: sp2}).Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sp2.setCalled != 0 {
		t.Errorf("peers set without bgp.nodePeers: %+v", sp2.peers)
	}
}
