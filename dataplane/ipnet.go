package dataplane

import (
	"net"
	"net/netip"
)

// ipNet converts a netip.Prefix to the *net.IPNet netlink wants.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
