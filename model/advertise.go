package model

import (
	"maps"
	"net/netip"
	"slices"
)

// VIPRoute is a host route (/32 or /128) for a VIP that BGP should announce,
// with the attributes its LBRoute asked for.
type VIPRoute struct {
	Prefix netip.Prefix
	Attrs  Advertisement
}

// Announceable returns one host route per VIP that has at least one eligible
// real in some virtual service: a VIP whose every real is down is withdrawn,
// so upstream routers send its traffic to an edge node that can serve it.
// When several virtual services share a VIP, the attributes of the first one
// (by key) win; communities are merged.
func (s *State) Announceable() []VIPRoute {
	return s.RoutesWhere(func(vs *VirtualService) bool { return vs.EligibleCount() > 0 })
}

// RoutesWhere returns one host route per VIP of the virtual services keep
// accepts, with the attributes of those services merged as in Announceable.
// Callers that decide announcement by other rules (health damping, what the
// kernel has programmed) use it to build the routes.
func (s *State) RoutesWhere(keep func(*VirtualService) bool) []VIPRoute {
	byVIP := map[netip.Addr]*VIPRoute{}
	for i := range s.Services {
		vs := &s.Services[i]
		if !keep(vs) {
			continue
		}
		r, ok := byVIP[vs.VIP]
		if !ok {
			r = &VIPRoute{Prefix: netip.PrefixFrom(vs.VIP, vs.VIP.BitLen())}
			if vs.BGP.LocalPref != nil {
				lp := *vs.BGP.LocalPref
				r.Attrs.LocalPref = &lp
			}
			byVIP[vs.VIP] = r
		}
		r.Attrs.Communities = mergeSorted(r.Attrs.Communities, vs.BGP.Communities)
		r.Attrs.LargeCommunities = mergeSorted(r.Attrs.LargeCommunities, vs.BGP.LargeCommunities)
	}
	out := make([]VIPRoute, 0, len(byVIP))
	for _, a := range slices.SortedFunc(maps.Keys(byVIP), netip.Addr.Compare) {
		out = append(out, *byVIP[a])
	}
	return out
}

func mergeSorted(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
