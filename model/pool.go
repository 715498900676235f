package model

import (
	"net/netip"
	"slices"
)

// Pool is a range VIPs may be taken from, optionally limited to some
// namespaces. A VIP outside every pool that admits the LBRoute's namespace is
// refused (reason VIPNotAllowed): it keeps a tenant from announcing someone
// else's address into the fabric.
type Pool struct {
	CIDR netip.Prefix
	// Namespaces that may use the pool; empty means any namespace.
	Namespaces []string
}

// Admits reports whether a VIP in namespace ns may come from this pool.
func (p Pool) Admits(ns string, vip netip.Addr) bool {
	if !p.CIDR.Contains(vip.Unmap()) {
		return false
	}
	return len(p.Namespaces) == 0 || slices.Contains(p.Namespaces, ns)
}

// AnyAdmits reports whether some pool admits the VIP for the namespace.
func AnyAdmits(pools []Pool, ns string, vip netip.Addr) bool {
	return slices.ContainsFunc(pools, func(p Pool) bool { return p.Admits(ns, vip) })
}
