package bgp

import (
	"net/netip"
	"slices"
)

// candidate is one learned path for a prefix, reduced to what route
// selection and the kernel need.
type candidate struct {
	Peer      netip.Addr // the neighbor that sent it
	NextHop   netip.Addr
	LocalPref uint32
	ASPathLen int
	Origin    uint8
	MED       uint32
	Best      bool
}

// selectNextHops picks the kernel next hops for one prefix: the best path's
// next hop and those of every other path that ties with it on the BGP
// attributes that matter for multipath (local-pref, AS path length, origin,
// MED), so a prefix that several peers announce equally is spread across
// them (ECMP). Local-pref is compared, never filtered: Calico announces its
// blocks with 2147482623. Returns nil when no usable path is left.
func selectNextHops(cands []candidate) []netip.Addr {
	var best *candidate
	for i := range cands {
		if !usableNextHop(cands[i].NextHop) {
			continue
		}
		if cands[i].Best {
			best = &cands[i]
			break
		}
		if best == nil {
			best = &cands[i]
		}
	}
	if best == nil {
		return nil
	}
	var hops []netip.Addr
	for _, c := range cands {
		if !usableNextHop(c.NextHop) {
			continue
		}
		if c.LocalPref == best.LocalPref && c.ASPathLen == best.ASPathLen && c.Origin == best.Origin && c.MED == best.MED {
			hops = append(hops, c.NextHop)
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return slices.Compact(hops)
}

func usableNextHop(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback()
}

// importable reports whether a learned prefix lies inside one of cidrs.
func importable(p netip.Prefix, cidrs []netip.Prefix) bool {
	for _, c := range cidrs {
		if c.Bits() <= p.Bits() && c.Contains(p.Addr()) && c.Addr().Is4() == p.Addr().Is4() {
			return true
		}
	}
	return false
}

// collapseCIDRs drops CIDRs contained in another one, so each RIB
// destination is read once.
func collapseCIDRs(cidrs []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, c := range cidrs {
		c = c.Masked()
		inside := false
		for j, o := range cidrs {
			o = o.Masked()
			if i != j && o.Bits() <= c.Bits() && o.Contains(c.Addr()) && (o != c || j < i) {
				inside = true
				break
			}
		}
		if !inside {
			out = append(out, c)
		}
	}
	return out
}

// routeDiff is what to change in the kernel.
type routeDiff struct {
	Replace map[netip.Prefix][]netip.Addr
	Delete  []netip.Prefix
}

// diffRoutes compares the agent's kernel routes with the wanted ones.
// Routes in keep (adopted from a previous run, not yet confirmed by a
// converged RIB) are left alone even when nobody announces them yet.
func diffRoutes(have, want map[netip.Prefix][]netip.Addr, keep map[netip.Prefix]bool) routeDiff {
	d := routeDiff{Replace: map[netip.Prefix][]netip.Addr{}}
	for p, hops := range want {
		if cur, ok := have[p]; !ok || !slices.Equal(cur, hops) {
			d.Replace[p] = hops
		}
	}
	for p := range have {
		if _, ok := want[p]; !ok && !keep[p] {
			d.Delete = append(d.Delete, p)
		}
	}
	slices.SortFunc(d.Delete, comparePrefix)
	return d
}
