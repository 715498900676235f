package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/arraynetworks/edgeagent/config"
)

// RouteProtocol is the rtnetlink protocol number on every route the agent
// installs ("proto 237" in `ip route`). It tells the agent's routes from
// everyone else's, so it can adopt them after a restart and remove exactly
// them on cleanup. 237 is unassigned in iproute2's rt_protos.
const RouteProtocol netlink.RouteProtocol = 237

// DefaultRouteMetric is the kernel metric of learned routes unless
// configured (bgp.importMetric). It is well above the metrics other routing
// daemons use by default (BIRD's kernel protocol: 32, FRR's zebra: 20), so
// where calico-node's BIRD also routes a pod block on the edge node — through
// an IPIP or VXLAN tunnel, say — the kernel keeps using BIRD's route, and the
// agent's takes over only once BIRD withdraws it.
const DefaultRouteMetric = config.DefaultImportMetric

// RouteTable is the agent's view of the kernel's main routing table,
// restricted to routes carrying RouteProtocol. The BGP package installs
// learned routes through it.
type RouteTable struct {
	h      routeHandle
	metric uint32
}

// NewRouteTable works on the network namespace of handle h (nil: the
// current namespace) and installs routes with the given metric (0:
// DefaultRouteMetric).
func NewRouteTable(h *netlink.Handle, metric uint32) *RouteTable {
	if h == nil {
		h = &netlink.Handle{}
	}
	return newRouteTable(h, metric)
}

func newRouteTable(h routeHandle, metric uint32) *RouteTable {
	if metric == 0 {
		metric = DefaultRouteMetric
	}
	return &RouteTable{h: h, metric: metric}
}

// Metric is the metric the table installs routes with.
func (t *RouteTable) Metric() uint32 { return t.metric }

// Replace installs prefix → next hops (several: ECMP), replacing whatever
// route the agent had for the prefix. The swap is one RTM_NEWROUTE with
// NLM_F_REPLACE, so forwarding never sees the prefix missing. The kernel
// keys routes by prefix and metric, not protocol: another daemon's route
// at the same metric would be replaced, which is why the metric is the
// agent's own (DefaultRouteMetric).
func (t *RouteTable) Replace(prefix netip.Prefix, nextHops []netip.Addr) error {
	if len(nextHops) == 0 {
		return t.Delete(prefix)
	}
	r := t.route(prefix, t.metric)
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
	return t.del(t.route(prefix, t.metric))
}

func (t *RouteTable) del(r *netlink.Route) error {
	err := t.h.RouteDel(r)
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("delete route %s metric %d: %w", r.Dst, r.Priority, err)
	}
	return nil
}

// List returns every route the agent owns, with its next hops sorted. A
// route of the agent's at another metric (one installed before
// bgp.importMetric changed) is moved to the table's metric first — the new
// route goes in before the old one goes, so the prefix is never unrouted.
func (t *RouteTable) List() (map[netip.Prefix][]netip.Addr, error) {
	rs, err := t.listAll()
	if err != nil {
		return nil, err
	}
	out := map[netip.Prefix][]netip.Addr{}
	var moved []netlink.Route
	for _, r := range rs {
		p, hops := prefixOf(r.Dst), nextHopsOf(r)
		if uint32(r.Priority) != t.metric {
			moved = append(moved, r)
		}
		if _, seen := out[p]; !seen || uint32(r.Priority) == t.metric {
			out[p] = hops
		}
	}
	var errs []error
	for _, r := range moved {
		p := prefixOf(r.Dst)
		if err := t.Replace(p, out[p]); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := t.del(&r); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// listAll returns the agent's routes (RouteProtocol, main table) as the
// kernel has them.
func (t *RouteTable) listAll() ([]netlink.Route, error) {
	var out []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := t.h.RouteListFiltered(fam, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range rs {
			if r.Dst != nil {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// Preferred returns, for each prefix that another protocol also routes in
// the main table with a metric the kernel prefers to the agent's (lower, or
// equal and so first), a description of that route: "bird metric 32 via
// 10.99.0.11". The agent's route for such a prefix is a fallback only. One
// dump of the table per family, so it costs the same for one prefix as for
// thousands.
func (t *RouteTable) Preferred(prefixes []netip.Prefix) (map[netip.Prefix]string, error) {
	want := make(map[netip.Prefix]bool, len(prefixes))
	fams := map[int]bool{}
	for _, p := range prefixes {
		want[p.Masked()] = true
		fams[family(p.Addr())] = true
	}
	out := map[netip.Prefix]string{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if !fams[fam] {
			continue
		}
		rs, err := t.h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range rs {
			if r.Dst == nil || r.Protocol == RouteProtocol || uint32(r.Priority) > t.metric {
				continue
			}
			p := prefixOf(r.Dst)
			if !want[p] {
				continue
			}
			if _, done := out[p]; done {
				continue
			}
			d := fmt.Sprintf("%s metric %d", r.Protocol, r.Priority)
			if hops := nextHopsOf(r); len(hops) > 0 {
				d += fmt.Sprintf(" via %v", hops)
			} else if r.LinkIndex > 0 {
				if l, err := t.h.LinkByIndex(r.LinkIndex); err == nil {
					d += " dev " + l.Attrs().Name
				}
			}
			out[p] = d
		}
	}
	return out, nil
}

func prefixOf(dst *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(dst.IP)
	ones, _ := dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func nextHopsOf(r netlink.Route) []netip.Addr {
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
	return hops
}

func (t *RouteTable) route(prefix netip.Prefix, metric uint32) *netlink.Route {
	prefix = prefix.Masked()
	return &netlink.Route{
		Dst:      ipNet(prefix),
		Protocol: RouteProtocol,
		Priority: int(metric),
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
