package dataplane

import (
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// staleUDP matches the conntrack entries of UDP flows that a virtual service
// sent to a real which no longer receives new connections. UDP has no close:
// without deleting them, a client that keeps sending (DNS, QUIC, syslog)
// stays pinned to the departed real until the entry times out. TCP entries
// are left alone so established connections drain.
type staleUDP struct {
	vip   netip.AddrPort
	reals map[netip.AddrPort]bool
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f staleUDP) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, _ := netip.AddrFromSlice(flow.Forward.DstIP)
	if netip.AddrPortFrom(dst.Unmap(), flow.Forward.DstPort) != f.vip {
		return false
	}
	src, _ := netip.AddrFromSlice(flow.Reverse.SrcIP)
	return f.reals[netip.AddrPortFrom(src.Unmap(), flow.Reverse.SrcPort)]
}

// staleFilters compares what was applied with what is now wanted and
// returns, per family, filters for the UDP reals that left their service.
func staleFilters(old, cur map[string]Frontend, changed []string) map[Family][]netlink.CustomConntrackFilter {
	out := map[Family][]netlink.CustomConntrackFilter{}
	for _, key := range changed {
		o, ok := old[key]
		if !ok || o.Protocol != "UDP" || len(o.Reals) == 0 {
			continue
		}
		keep := map[netip.AddrPort]bool{}
		if n, ok := cur[key]; ok && n.Frontend == o.Frontend {
			for _, r := range n.Reals {
				keep[r] = true
			}
		}
		gone := map[netip.AddrPort]bool{}
		for _, r := range o.Reals {
			if !keep[r] {
				gone[r] = true
			}
		}
		if len(gone) > 0 {
			fam := familyOf(o.VIP)
			out[fam] = append(out[fam], staleUDP{vip: netip.AddrPortFrom(o.VIP, o.Port), reals: gone})
		}
	}
	return out
}
