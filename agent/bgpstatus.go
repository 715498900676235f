package agent

import (
	"github.com/arraynetworks/edgeagent/bgp"
	"github.com/arraynetworks/edgeagent/status"
)

// neighborStatus turns the speaker's neighbors into /status neighbors[]
// (field names are a contract: status.Neighbor). Never nil, so the
// document says "neighbors": [] rather than null.
func neighborStatus(ns []bgp.Neighbor) []status.Neighbor {
	out := make([]status.Neighbor, 0, len(ns))
	for _, n := range ns {
		sn := status.Neighbor{
			Address:         n.Address.String(),
			ASN:             n.ASN,
			State:           n.State,
			UptimeSeconds:   int64(n.Uptime.Seconds()),
			Received:        n.Received,
			Advertised:      n.Advertised,
			Accepted:        n.Accepted,
			GracefulRestart: n.GracefulRestart,
			LastError:       n.LastError,
			Source:          n.Source,
		}
		if n.LocalAddress.IsValid() {
			sn.LocalAddress = n.LocalAddress.String()
		}
		out = append(out, sn)
	}
	return out
}

// learnedStatus turns the speaker's learned routes into /status
// learnedRoutes[]; nil when there are none (the field is omitted).
func learnedStatus(rs []bgp.LearnedRoute) []status.LearnedRoute {
	if len(rs) == 0 {
		return nil
	}
	out := make([]status.LearnedRoute, 0, len(rs))
	for _, r := range rs {
		lr := status.LearnedRoute{Prefix: r.Prefix.String(), Metric: r.Metric, ShadowedBy: r.ShadowedBy}
		for _, h := range r.NextHops {
			lr.NextHops = append(lr.NextHops, h.String())
		}
		out = append(out, lr)
	}
	return out
}
