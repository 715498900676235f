package nftables

import (
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/arraynetworks/edgeagent/model"
)

// staleUDP matches the conntrack entries of UDP flows that a virtual service
// sent to a real which no longer receives new connections. UDP has no
// close: without deleting them, a client that keeps sending (DNS, QUIC,
// syslog) stays pinned to the departed real until the entry times out. TCP
// entries are left alone so established connections drain.
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
// returns, per family (4 or 6), filters for the UDP reals that left their
// service.
func staleFilters(old, cur map[string]appliedService, changed []string) map[int][]netlink.CustomConntrackFilter {
	out := map[int][]netlink.CustomConntrackFilter{}
	for _, key := range changed {
		o, ok := old[key]
		if !ok || o.fe.Protocol != model.UDP || len(o.reals) == 0 {
			continue
		}
		keep := map[netip.AddrPort]bool{}
		if n, ok := cur[key]; ok && n.fe == o.fe {
			for _, r := range n.reals {
				keep[r] = true
			}
		}
		gone := map[netip.AddrPort]bool{}
		for _, r := range o.reals {
			if !keep[r] {
				gone[r] = true
			}
		}
		if len(gone) > 0 {
			v := familyOf(o.fe.VIP).v
			out[v] = append(out[v], staleUDP{vip: netip.AddrPortFrom(o.fe.VIP, o.fe.Port), reals: gone})
		}
	}
	return out
}

func (b *Backend) dropStaleUDP(cur map[string]appliedService, changed []string) {
	for v, filters := range staleFilters(b.applied, cur, changed) {
		fam := netlink.InetFamily(netlink.FAMILY_V4)
		if v == 6 {
			fam = netlink.FAMILY_V6
		}
		n, err := b.h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...)
		if err != nil {
			b.log.Warn("delete conntrack entries of departed UDP reals", "family", v, "err", err)
			continue
		}
		if n > 0 {
			b.log.Info("deleted conntrack entries of departed UDP reals", "family", v, "entries", n)
		}
	}
}
