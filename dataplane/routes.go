package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol is the rtnetlink protocol number on every route the agent
// installs ("proto 237" in `ip route`). It tells the agent's routes from
// everyone else's, so it can adopt them after a restart and remove exactly
// them on cleanup. 237 is unassigned in iproute2's rt_protos.
const RouteProtocol netlink.RouteProtocol = 237

// RouteTable is the agent's view of the kernel's main routing table,
// restricted to routes carrying RouteProtocol. The BGP package installs
// learned routes through it.
type RouteTable struct {
	h *netlink.Handle
}

// NewRouteTable works on the network namespace of handle h; nil means the
// current namespace.
func NewRouteTable(h *netlink.Handle) *RouteTable {
	if h == nil {
		h = &netlink.Handle{}
	}
	return &RouteTable{h: h}
}

// Replace installs prefix → next hops (several: ECMP), replacing whatever
// route the agent had for the prefix. The swap is one RTM_NEWROUTE with
// NLM_F_REPLACE, so forwarding never sees the prefix missing.
func (t *RouteTable) Replace(prefix netip.Prefix, nextHops []netip.Addr) error {
	if len(nextHops) == 0 {
		return t.Delete(prefix)
	}
	r := t.route(prefix)
	hops := slices.Clone(nextHops)
	slices.SortFunc(hops, netip.Addr.Compare)
	if len(hops) == 1 {
		r.Gw = hops[0].AsSlice()
	} else {
		for _, nh := range hops {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{Gw: nh.AsSlice()})
		}
	}
	if err := t.h.RouteReplace(r); err != nil {
		return fmt.Errorf("replace route %s via %v: %w", prefix, hops, err)
	}
	return nil
}

// Delete removes the agent's route for prefix; a missing route is not an error.
func (t *RouteTable) Delete(prefix netip.Prefix) error {
	err := t.h.RouteDel(t.route(prefix))
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("delete route %s: %w", prefix, err)
	}
	return nil
}

// List returns every route the agent owns, with its next hops sorted.
func (t *RouteTable) List() (map[netip.Prefix][]netip.Addr, error) {
	out := map[netip.Prefix][]netip.Addr{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := t.h.RouteListFiltered(fam, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range rs {
			if r.Dst == nil {
				continue
			}
			a, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			p := netip.PrefixFrom(a.Unmap(), ones)
			var hops []netip.Addr
			if g, ok := netip.AddrFromSlice(r.Gw); ok {
				hops = append(hops, g.Unmap())
			}
			for _, nh := range r.MultiPath {
				if g, ok := netip.AddrFromSlice(nh.Gw); ok {
					hops = append(hops, g.Unmap())
				}
			}
			slices.SortFunc(hops, netip.Addr.Compare)
			out[p] = hops
		}
	}
	return out, nil
}

func (t *RouteTable) route(prefix netip.Prefix) *netlink.Route {
	prefix = prefix.Masked()
	return &netlink.Route{
		Dst:      ipNet(prefix),
		Protocol: RouteProtocol,
		Table:    unix.RT_TABLE_MAIN,
		Family:   family(prefix.Addr()),
	}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
