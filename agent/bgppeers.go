package agent

import (
	"context"

	"github.com/arraynetworks/edgeagent/bgp"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/watcher"
)

// peerDiscoverer is a Speaker that also peers with the Nodes the source
// discovered (bgp.nodePeers); *bgp.Speaker is one.
type peerDiscoverer interface {
	SetDiscoveredPeers(ctx context.Context, peers []bgp.Peer) error
}

var _ peerDiscoverer = (*bgp.Speaker)(nil)

// nodePeers turns discovered Nodes into BGP peers: the Node's Calico
// address, bgp.nodePeers.asn (default: ours, iBGP), source "node/<name>".
func nodePeers(cfg *config.Config, nps []watcher.NodePeer) []bgp.Peer {
	var asn uint32
	if cfg.BGP.NodePeers != nil {
		asn = cfg.BGP.NodePeers.ASN
	}
	out := make([]bgp.Peer, 0, len(nps))
	for _, np := range nps {
		out = append(out, bgp.Peer{Address: np.Address, ASN: asn, Source: "node/" + np.Node})
	}
	return out
}
