package nftables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/arraynetworks/edgeagent/dataplane/slots"
	"github.com/arraynetworks/edgeagent/model"
)

// maxWRRSlots bounds the slots of an rr, wrr or random service, as the
// iptables backend bounds its cascade: larger weight sums are apportioned
// over this many slots, each real within one slot of its share.
const maxWRRSlots = 256

// shSlots is the size of every sh service's Maglev table. It is the same
// whatever the reals: a client's slot is jhash(address) mod shSlots, so a
// size that followed the number of reals would move almost every client
// whenever one left. 4093 (a prime, as Maglev needs) keeps the clients
// that move when one of up to 8 reals leaves or joins within 1.2 times the
// minimum (dataplane/slots TestMaglevMovement), at 4093 map elements per sh
// service (~0.3 MB of kernel memory).
const shSlots = 4093

// shMaxUnits bounds the weight resolution of an sh table: weights are
// apportioned over at most 64 turns per round (at least 64 slots each).
const shMaxUnits = 64

// rendered is one virtual service as the kernel holds it: its frontend, the
// selector that picks a slot, and the real of every slot. It is a pure
// function of the service, so a restarted agent renders the same elements.
type rendered struct {
	err   error
	fam   *family
	fe    model.Frontend // VIP unmapped
	feKey []byte
	sel   selector         // zero when no real is eligible: rejected
	slots []netip.AddrPort // slot i → real
	reals []netip.AddrPort // the eligible reals, sorted (for conntrack)
}

// render validates vs and computes its slot table. The checks and their
// messages are the iptables backend's (dataplane.check), so a service is
// accepted or refused alike by both backends.
func render(vs *model.VirtualService) rendered {
	fe, reals, err := check(vs)
	if err != nil {
		return rendered{err: err, fe: fe}
	}
	r := rendered{fam: familyOf(fe.VIP), fe: fe}
	proto := byte(unix.IPPROTO_TCP)
	if fe.Protocol == model.UDP {
		proto = unix.IPPROTO_UDP
	}
	r.feKey = frontendKey(proto, fe.VIP, fe.Port)
	for _, rl := range reals {
		r.reals = append(r.reals, rl.Endpoint())
	}
	r.sel, r.slots = slotTable(vs.Policy, reals)
	return r
}

// slotTable chooses the selector and fills the slots for a policy over the
// eligible reals (sorted).
//
//   - rr: one slot per real, numgen inc: an exact cycle.
//   - wrr: slots in proportion to the weights (÷ gcd; sums above 256
//     apportioned to 256, within one slot), interleaved smoothly, numgen
//     inc: each cycle gives every real its share.
//   - random: the wrr slots, numgen random: weighted, independent per
//     connection.
//   - sh: a Maglev table (slots.Maglev) of shSlots slots, jhash of the
//     client address: one client, one real; when a real leaves, about 1/N
//     of the clients move, and a real coming back restores the table.
//
// Any policy over one real is one slot with numgen inc mod 1.
func slotTable(policy model.Policy, reals []model.Real) (selector, []netip.AddrPort) {
	switch {
	case len(reals) == 0:
		return selector{}, nil
	case len(reals) == 1:
		return selector{kindInc, 1}, []netip.AddrPort{reals[0].Endpoint()}
	}
	eps := make([]netip.AddrPort, len(reals))
	for i, r := range reals {
		eps[i] = r.Endpoint()
	}
	pick := func(order []int) []netip.AddrPort {
		out := make([]netip.AddrPort, len(order))
		for i, ri := range order {
			out[i] = eps[ri]
		}
		return out
	}
	switch policy {
	case model.SourceHash:
		names := make([]string, len(eps))
		w := make([]uint32, len(reals))
		for i, r := range reals {
			names[i], w[i] = eps[i].String(), r.Weight
		}
		units := slots.MaglevUnits(w, shMaxUnits)
		return selector{kindHash, shSlots}, pick(slots.Maglev(names, units, shSlots))
	case model.WeightedRoundRobin, model.Random:
		w := make([]uint64, len(reals))
		for i, r := range reals {
			w[i] = uint64(r.Weight)
		}
		order := slots.Smooth(slots.Apportion(w, max(maxWRRSlots, len(w))))
		k := kindInc
		if policy == model.Random {
			k = kindRand
		}
		return selector{k, uint32(len(order))}, pick(order)
	default: // rr
		return selector{kindInc, uint32(len(eps))}, eps
	}
}

// check validates a service and returns its frontend and the reals that get
// new connections (eligible, deduplicated, sorted). Same rules and messages
// as the iptables backend's.
func check(vs *model.VirtualService) (model.Frontend, []model.Real, error) {
	fe := vs.Frontend()
	fe.VIP = fe.VIP.Unmap()
	if !fe.VIP.IsValid() || fe.VIP.IsUnspecified() {
		return fe, nil, fmt.Errorf("vip %q: not a usable address", vs.VIP)
	}
	if fe.Port == 0 {
		return fe, nil, fmt.Errorf("port: must be 1-65535")
	}
	if fe.Protocol != model.TCP && fe.Protocol != model.UDP {
		return fe, nil, fmt.Errorf("protocol %q: must be TCP or UDP", fe.Protocol)
	}
	if !slices.Contains(model.Policies, vs.Policy) {
		return fe, nil, fmt.Errorf("policy %q: must be one of %v", vs.Policy, model.Policies)
	}
	reals := make([]model.Real, 0, len(vs.Reals))
	for i, r := range vs.Reals {
		r.IP = r.IP.Unmap()
		if !r.IP.IsValid() || r.Port == 0 {
			return fe, nil, fmt.Errorf("reals[%d] %s: needs an address and a port", i, r.Endpoint())
		}
		if r.IP.Is4() != fe.VIP.Is4() {
			return fe, nil, fmt.Errorf("reals[%d] %s: address family differs from vip %s", i, r.IP, fe.VIP)
		}
		if !r.Eligible() {
			continue
		}
		reals = append(reals, r)
	}
	slices.SortStableFunc(reals, func(a, b model.Real) int { return a.Endpoint().Compare(b.Endpoint()) })
	// Duplicates are adjacent now, in input order: the first counts.
	reals = slices.CompactFunc(reals, func(a, b model.Real) bool { return a.Endpoint() == b.Endpoint() })
	if len(reals) == 0 {
		reals = nil
	}
	return fe, reals, nil
}

// elements calls fn for every element r contributes: its frontend in the
// selector's set (or the reject set), and one slots element per slot. Keys
// and values are built in a stack buffer and converted once, to the string
// the element maps keep.
func (r *rendered) elements(fn func(set, key, val string)) {
	if r.err != nil {
		return
	}
	fe := string(r.feKey)
	if len(r.slots) == 0 {
		fn(r.fam.rejectSet(), fe, "")
		return
	}
	fn(r.sel.setName(r.fam), fe, "")
	slotsSet := r.fam.slotsSet()
	var kb [40]byte
	var vb [20]byte
	n := copy(kb[:], r.feKey)
	for i, ep := range r.slots {
		binary.NativeEndian.PutUint32(kb[n:], uint32(i))
		a := ep.Addr().As16()
		v := vb[:0]
		if ep.Addr().Is4() {
			v = append(v, a[12:]...)
		} else {
			v = append(v, a[:]...)
		}
		v = binary.BigEndian.AppendUint16(v, ep.Port())
		v = append(v, 0, 0)
		fn(slotsSet, string(kb[:n+4]), string(v))
	}
}
