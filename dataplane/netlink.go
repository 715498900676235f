package dataplane

import "github.com/vishvananda/netlink"

// The parts of a netlink handle the dataplane uses, each as narrow as its
// user needs. *netlink.Handle implements all of them (on the namespace it
// was opened in); the unit tests use an in-memory fake (fake_test.go) to
// drive the failure paths, and the kernel tests the real thing.

// linkHandle is what the VIP interface and address steps, and cleanup, use.
type linkHandle interface {
	LinkByName(name string) (netlink.Link, error)
	LinkList() ([]netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	LinkSetARPOff(link netlink.Link) error
	LinkSetIP6AddrGenMode(link netlink.Link, mode int) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// conntrackHandle is what the iptables backend uses to delete the conntrack
// entries of UDP reals that left.
type conntrackHandle interface {
	ConntrackDeleteFilters(table netlink.ConntrackTableType, family netlink.InetFamily, filters ...netlink.CustomConntrackFilter) (uint, error)
}

// routeHandle is what RouteTable uses.
type routeHandle interface {
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	LinkByIndex(index int) (netlink.Link, error)
}

var (
	_ linkHandle      = (*netlink.Handle)(nil)
	_ conntrackHandle = (*netlink.Handle)(nil)
	_ routeHandle     = (*netlink.Handle)(nil)
)
