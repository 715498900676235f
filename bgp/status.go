package bgp

import (
	"context"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/arraynetworks/edgeagent/status"
)

// peerSnapshot is one neighbor as GoBGP and the speaker see it.
type peerSnapshot struct {
	status.Neighbor
	updatesIn, updatesOut uint64
}

// snapshot reads every neighbor. Peers still waiting for the first
// Announce are listed as idle.
func (s *Speaker) snapshot(ctx context.Context) []peerSnapshot {
	s.mu.Lock()
	started := s.started && s.srv != nil
	wanted := slices.Clone(s.wanted)
	v4, v6 := 0, 0
	for p := range s.paths {
		if p.Addr().Is4() {
			v4++
		} else {
			v6++
		}
	}
	s.mu.Unlock()
	if !started {
		return nil
	}
	var accepted map[string]int
	if s.imp != nil {
		accepted = s.imp.acceptedCounts()
	}
	got := map[string]*api.Peer{}
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.Conf != nil {
			got[p.Conf.NeighborAddress] = p
		}
	})
	now := time.Now()
	out := make([]peerSnapshot, 0, len(wanted))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range wanted {
		addr := w.Address.String()
		n := peerSnapshot{Neighbor: status.Neighbor{
			Address:  addr,
			ASN:      w.ASN,
			State:    "idle",
			Source:   w.Source,
			Accepted: accepted[addr],
		}}
		if w.LocalAddress.IsValid() {
			n.LocalAddress = w.LocalAddress.String()
		}
		if pi := s.peerInfo[addr]; pi != nil {
			n.LastError = pi.reason()
		} else if !s.gateOpen {
			n.LastError = "waiting for the first announcement before opening the session"
		}
		if p := got[addr]; p != nil {
			st := p.State
			if st != nil {
				n.State = stateWord(st.SessionState)
				if st.Messages != nil {
					if st.Messages.Received != nil {
						n.updatesIn = st.Messages.Received.Update
					}
					if st.Messages.Sent != nil {
						n.updatesOut = st.Messages.Sent.Update
					}
				}
			}
			if p.Transport != nil && p.Transport.LocalAddress != "" && n.State == "established" {
				n.LocalAddress = p.Transport.LocalAddress
			}
			if p.GracefulRestart != nil && p.GracefulRestart.Enabled {
				n.GracefulRestart = true
			}
			for _, af := range p.AfiSafis {
				if af.State != nil {
					n.Received += int(af.State.Received)
				}
			}
			if n.State == "established" {
				if p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
					n.UptimeSeconds = int64(now.Sub(p.Timers.State.Uptime.AsTime()).Seconds())
				}
				if w.Address.Is4() {
					n.Advertised = v4
				} else {
					n.Advertised = v6
				}
			}
		}
		if n.LastError == "" && (n.State == "active" || n.State == "connect") {
			// GoBGP reports TCP connect failures only at debug level: say
			// at least what the state means, so "active" alone is not all
			// an operator gets.
			n.LastError = "no session: the peer has not answered or accepted our TCP connection yet"
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b peerSnapshot) int {
		return netip.MustParseAddr(a.Address).Compare(netip.MustParseAddr(b.Address))
	})
	return out
}

// Neighbors reports every desired neighbor (the /status contract).
func (s *Speaker) Neighbors() []status.Neighbor {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap := s.snapshot(ctx)
	out := make([]status.Neighbor, len(snap))
	for i, n := range snap {
		out[i] = n.Neighbor
	}
	return out
}

// Learned reports the learned routes installed in the kernel.
func (s *Speaker) Learned() []status.LearnedRoute {
	if s.imp == nil {
		return nil
	}
	return s.imp.learned()
}
