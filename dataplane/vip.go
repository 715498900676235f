package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kinds of VIP interface.
const (
	KindDummy  = "dummy"
	KindBridge = "bridge"
)

// ensureLink finds or creates the VIP interface: a dummy link where the
// kernel has the driver, else a bridge with no ports (it holds local
// addresses just as well and forwards nothing). It is brought up with ARP
// off and without IPv6 link-local address generation. An existing link of
// the right kind is adopted and changed only where it differs.
func ensureLink(h linkHandle, name string) (netlink.Link, string, int, error) {
	changes := 0
	l, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		if err := h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs}); err != nil {
			if !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.ENOENT) {
				return nil, "", 0, fmt.Errorf("create %s (dummy): %w", name, err)
			}
			// No dummy driver in this kernel ("Unknown device type").
			if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
				return nil, "", 0, fmt.Errorf("create %s (bridge; the kernel has no dummy driver): %w", name, err)
			}
		}
		changes++
		if l, err = h.LinkByName(name); err != nil {
			return nil, "", 0, fmt.Errorf("find %s after creating it: %w", name, err)
		}
		// Before it is up, so the kernel never gives it an fe80:: address.
		if err := h.LinkSetIP6AddrGenMode(l, 1 /* IN6_ADDR_GEN_MODE_NONE */); err != nil {
			return nil, "", 0, fmt.Errorf("%s: disable IPv6 address generation: %w", name, err)
		}
	case err != nil:
		return nil, "", 0, fmt.Errorf("find %s: %w", name, err)
	}
	kind := l.Type()
	if kind != KindDummy && kind != KindBridge {
		return nil, "", 0, fmt.Errorf("interface %s exists with type %q, not dummy or bridge: not the agent's, refusing to use it", name, kind)
	}
	if kind == KindBridge {
		ports, err := bridgePorts(h, l)
		if err != nil {
			return nil, "", 0, err
		}
		if ports > 0 {
			return nil, "", 0, fmt.Errorf("interface %s is a bridge with %d ports: not the agent's port-less VIP bridge, refusing to use it", name, ports)
		}
	}
	if l.Attrs().RawFlags&unix.IFF_NOARP == 0 {
		if err := h.LinkSetARPOff(l); err != nil {
			return nil, "", 0, fmt.Errorf("%s: arp off: %w", name, err)
		}
		changes++
	}
	if l.Attrs().RawFlags&unix.IFF_UP == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return nil, "", 0, fmt.Errorf("%s: set up: %w", name, err)
		}
		changes++
	}
	return l, kind, changes, nil
}

func bridgePorts(h linkHandle, l netlink.Link) (int, error) {
	links, err := h.LinkList()
	if err != nil {
		return 0, fmt.Errorf("list links: %w", err)
	}
	n := 0
	for _, o := range links {
		if o.Attrs().MasterIndex == l.Attrs().Index {
			n++
		}
	}
	return n, nil
}

// listVIPs returns the addresses on the VIP link, leaving out link-scope
// ones (the kernel's, not the agent's).
func listVIPs(h linkHandle, l netlink.Link) (map[netip.Prefix]bool, error) {
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses on %s: %w", l.Attrs().Name, err)
	}
	out := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_LINK || a.IPNet == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		out[netip.PrefixFrom(ip.Unmap(), ones)] = true
	}
	return out, nil
}

// addVIPs adds the addresses of want that the link lacks; removeVIPs
// removes those it has beyond want. have is updated in place. They are
// separate so that addresses go on before the rules that use them and come
// off only after the rules are gone.
// Only the candidate prefixes are looked at.
func addVIPs(h linkHandle, l netlink.Link, candidates map[netip.Prefix]bool, want func(netip.Prefix) bool, have map[netip.Prefix]bool) (int, error) {
	changes := 0
	for p := range candidates {
		if have[p] || !want(p) {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			// No duplicate address detection: the address is ours alone and
			// must be usable at once (a port-less bridge never finishes DAD).
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, a); err != nil && !errors.Is(err, syscall.EEXIST) {
			return changes, fmt.Errorf("add %s to %s: %w", p, l.Attrs().Name, err)
		}
		have[p] = true
		changes++
	}
	return changes, nil
}

func removeVIPs(h linkHandle, l netlink.Link, candidates map[netip.Prefix]bool, want func(netip.Prefix) bool, have map[netip.Prefix]bool) (int, error) {
	changes := 0
	for p := range candidates {
		if !have[p] || want(p) {
			continue
		}
		if err := h.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return changes, fmt.Errorf("remove %s from %s: %w", p, l.Attrs().Name, err)
		}
		delete(have, p)
		changes++
	}
	return changes, nil
}
