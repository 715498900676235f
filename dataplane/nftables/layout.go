package nftables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	nft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The layout: one table of the agent's own, `table inet edgeagent`. Its
// chains and their rules are fixed; everything that depends on the virtual
// services is map and set elements, except one rule per selector in use
// (see below). Listing it: `nft list table inet edgeagent`; the maps hold
// one element per slot, so list single maps, not the ruleset, at scale.
//
//	chain prerouting  nat hook prerouting  priority dstnat-10:  jump services
//	chain output      nat hook output      priority dstnat-10:  jump services   (unless NoLocalTraffic)
//	chain services    one rule per selector in use, e.g. for rr over 3 reals:
//	    meta l4proto . ip daddr . th dport @fe4_inc_3 ct mark set ct mark | 0x2000
//	        dnat ip to meta l4proto . ip daddr . th dport . numgen inc mod 3 map @slots4
//	chain postrouting nat hook postrouting priority srcnat-10:  ct mark & 0x2000 == 0x2000 masquerade   (Masquerade)
//	chain input       filter hook input    priority filter-10:  @reject4/@reject6 → tcp reset / icmpx port-unreachable
//
//	map slots4 { proto . VIP . port . slot : real address . port }   (slots6 alike)
//	set fe4_<selector> { proto . VIP . port }                         every frontend using that selector
//	set reject4 { proto . VIP . port }                                frontends without an eligible real
//
// A selector is how the kernel picks a slot: numgen inc mod m (rr, wrr: a
// cycle), numgen random mod m (random), jhash of the client address mod m
// (sh, with a Maglev table). Services share a selector rule when they share
// the kind and the slot count, so the rules are as many as distinct
// (kind, slot count) pairs — a handful in practice — not one per service;
// adding, removing or re-weighting a real, or adding or removing a service,
// changes elements only, unless it brings the first service of a new slot
// count (one rule and one set, no jump). Rules with jumps are the two fixed
// ones from prerouting and output, so no transaction ever makes the kernel
// re-validate a graph of chains.
//
// The priorities put the agent's DNAT before kube-proxy's and iptables-nft's
// nat chains (dstnat, -100) at the same hook: the first nat chain that binds
// a connection wins. The reject chain runs before the host's filter input
// chains (priority 0), so a client gets its reset even when the host drops
// unknown ports.

// DefaultTable is the name of the agent's table (family inet).
const DefaultTable = "edgeagent"

// DefaultConnMark is the conntrack-mark bit of load-balanced connections,
// the same as the iptables backend's, so a node switching backends
// masquerades every connection exactly once.
const DefaultConnMark = 0x2000

// Chain names and priorities.
const (
	chainServices    = "services"
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainInput       = "input"

	prioDNAT   = -110 // dstnat - 10
	prioSNAT   = 90   // srcnat - 10
	prioFilter = -10  // filter - 10

	// ruleComment marks the agent's rules (nft shows it as the comment).
	ruleComment = "edgeagent"
)

// jhashSeed is the seed of the source hash. It is a constant, not random,
// so that every edge node maps a client address to the same slot: with the
// same reals, every node's Maglev table is the same too, and a client keeps
// its real when ECMP moves it to another node.
const jhashSeed = 0x65646765

// family describes one IP family inside the inet table: header offsets and
// the registers its rules use (the ones nft itself allocates for these
// expressions, so `nft --debug=netlink` shows the same code).
type family struct {
	v         int // 4 or 6
	nfproto   byte
	addrLen   uint32
	daddrOff  uint32
	saddrOff  uint32
	regPort   uint32 // th dport after the address (32-bit registers from 8)
	regSlot   uint32 // the selector's output
	regSrc    uint32 // the source address, hashed by sh
	regNATPrt uint32 // the real's port after the lookup's address
	addrType  nft.SetDatatype
}

var (
	v4 = &family{v: 4, nfproto: unix.NFPROTO_IPV4, addrLen: 4, daddrOff: 16, saddrOff: 12,
		regPort: 10, regSlot: 11, regSrc: 3, regNATPrt: 9, addrType: nft.TypeIPAddr}
	v6 = &family{v: 6, nfproto: unix.NFPROTO_IPV6, addrLen: 16, daddrOff: 24, saddrOff: 8,
		regPort: 13, regSlot: 14, regSrc: 19, regNATPrt: 2, addrType: nft.TypeIP6Addr}
	families = []*family{v4, v6}
)

func familyOf(a netip.Addr) *family {
	if a.Is4() {
		return v4
	}
	return v6
}

func (f *family) slotsSet() string  { return fmt.Sprintf("slots%d", f.v) }
func (f *family) rejectSet() string { return fmt.Sprintf("reject%d", f.v) }

// frontendType is the key of the frontend and reject sets:
// inet_proto . address . inet_service.
func (f *family) frontendType() nft.SetDatatype {
	return nft.MustConcatSetType(nft.TypeInetProto, f.addrType, nft.TypeInetService)
}

// Selector kinds.
type kind string

const (
	kindInc  kind = "inc" // numgen inc: rr, wrr, and any policy with one real
	kindRand kind = "rnd" // numgen random: random
	kindHash kind = "sh"  // jhash of the source address: sh
)

// selector is how the kernel picks one of mod slots.
type selector struct {
	kind kind
	mod  uint32
}

// setName is the frontend set of the selector in family f, e.g. fe4_inc_3.
func (s selector) setName(f *family) string { return fmt.Sprintf("fe%d_%s_%d", f.v, s.kind, s.mod) }

// parseSetName is the inverse of setName; ok is false for other names.
func parseSetName(name string) (*family, selector, bool) {
	parts := strings.Split(name, "_")
	if len(parts) != 3 {
		return nil, selector{}, false
	}
	var f *family
	switch parts[0] {
	case "fe4":
		f = v4
	case "fe6":
		f = v6
	default:
		return nil, selector{}, false
	}
	k := kind(parts[1])
	if k != kindInc && k != kindRand && k != kindHash {
		return nil, selector{}, false
	}
	mod, err := strconv.ParseUint(parts[2], 10, 32)
	if err != nil || mod == 0 || strconv.FormatUint(mod, 10) != parts[2] {
		return nil, selector{}, false
	}
	return f, selector{k, uint32(mod)}, true
}

// Options that shape the layout.
type layoutOptions struct {
	table          string
	connMark       uint32
	masquerade     bool
	noLocalTraffic bool
}

func (o layoutOptions) tableRef() *nft.Table {
	return &nft.Table{Name: o.table, Family: nft.TableFamilyINet}
}

// setDef is a set or map of the layout.
func (o layoutOptions) setDef(name string) *nft.Set {
	t := o.tableRef()
	for _, f := range families {
		switch name {
		case f.slotsSet():
			return &nft.Set{Table: t, Name: name, IsMap: true, Concatenation: true,
				KeyType:  nft.MustConcatSetType(nft.TypeInetProto, f.addrType, nft.TypeInetService, nft.TypeMark),
				DataType: nft.MustConcatSetType(f.addrType, nft.TypeInetService)}
		case f.rejectSet():
			return &nft.Set{Table: t, Name: name, Concatenation: true, KeyType: f.frontendType()}
		}
	}
	if f, _, ok := parseSetName(name); ok {
		return &nft.Set{Table: t, Name: name, Concatenation: true, KeyType: f.frontendType()}
	}
	return nil
}

// staticSets are present whatever the services.
func staticSets() []string {
	return []string{v4.slotsSet(), v6.slotsSet(), v4.rejectSet(), v6.rejectSet()}
}

// chainDef is one chain of the layout with its fixed rules.
type chainDef struct {
	name  string
	typ   nft.ChainType
	hook  *nft.ChainHook
	prio  int32
	rules [][]expr.Any
}

func (c chainDef) chain(t *nft.Table) *nft.Chain {
	ch := &nft.Chain{Name: c.name, Table: t}
	if c.hook != nil {
		accept := nft.ChainPolicyAccept
		ch.Type, ch.Hooknum, ch.Priority, ch.Policy = c.typ, c.hook, nft.ChainPriorityRef(nft.ChainPriority(c.prio)), &accept
	}
	return ch
}

// chains returns the fixed chains (services has no fixed rules: its rules
// are the selectors').
func (o layoutOptions) chains() []chainDef {
	jump := [][]expr.Any{{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainServices}}}
	out := []chainDef{
		{name: chainServices},
		{name: chainPrerouting, typ: nft.ChainTypeNAT, hook: nft.ChainHookPrerouting, prio: prioDNAT, rules: jump},
	}
	if !o.noLocalTraffic {
		out = append(out, chainDef{name: chainOutput, typ: nft.ChainTypeNAT, hook: nft.ChainHookOutput, prio: prioDNAT, rules: jump})
	}
	if o.masquerade {
		out = append(out, chainDef{name: chainPostrouting, typ: nft.ChainTypeNAT, hook: nft.ChainHookPostrouting, prio: prioSNAT,
			rules: [][]expr.Any{{
				&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(o.connMark), Xor: native32(0)},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(o.connMark)},
				&expr.Masq{},
			}}})
	}
	var rejects [][]expr.Any
	for _, f := range families {
		rejects = append(rejects,
			append(append([]expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			}, f.frontendLookup(f.rejectSet())...), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}),
			append(f.frontendLookup(f.rejectSet()), &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}),
		)
	}
	out = append(out, chainDef{name: chainInput, typ: nft.ChainTypeFilter, hook: nft.ChainHookInput, prio: prioFilter, rules: rejects})
	return out
}

// frontendLookup matches packets whose proto . daddr . dport is in set.
func (f *family) frontendLookup(set string) []expr.Any {
	return append(append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
	}, f.loadFrontend()...), &expr.Lookup{SourceRegister: 1, SetName: set})
}

// loadFrontend puts proto . daddr . dport into registers 1, 9, regPort.
func (f *family) loadFrontend() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		&expr.Payload{DestRegister: f.regPort, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// selectorRule is the rule that load-balances the frontends of s's set:
// mark the connection, pick a slot, look up the real, DNAT to it.
func (o layoutOptions) selectorRule(f *family, s selector) []expr.Any {
	e := f.frontendLookup(s.setName(f))
	e = append(e,
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^o.connMark), Xor: native32(o.connMark)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
	)
	e = append(e, f.loadFrontend()...)
	switch s.kind {
	case kindInc:
		e = append(e, &expr.Numgen{Register: f.regSlot, Modulus: s.mod, Type: unix.NFT_NG_INCREMENTAL})
	case kindRand:
		e = append(e, &expr.Numgen{Register: f.regSlot, Modulus: s.mod, Type: unix.NFT_NG_RANDOM})
	case kindHash:
		e = append(e,
			&expr.Payload{DestRegister: f.regSrc, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen},
			&expr.Hash{SourceRegister: f.regSrc, DestRegister: f.regSlot, Length: f.addrLen, Modulus: s.mod, Seed: jhashSeed, Type: expr.HashTypeJenkins})
	}
	return append(e,
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: f.slotsSet()},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.nfproto), RegAddrMin: 1, RegProtoMin: f.regNATPrt, Specified: true},
	)
}

// comment is a rule's user data: a comment nft prints.
func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// Element encodings. Concatenated keys pad every field to 4 bytes; ports
// are in network order, the slot (numgen's and jhash's output) in host
// order.

// frontendKey is proto . vip . port.
func frontendKey(proto byte, vip netip.Addr, port uint16) []byte {
	a := vip.AsSlice()
	b := make([]byte, 4+len(a)+4)
	b[0] = proto
	copy(b[4:], a)
	binary.BigEndian.PutUint16(b[4+len(a):], port)
	return b
}

// slotKey is proto . vip . port . slot.
func slotKey(fe []byte, slot uint32) []byte {
	b := make([]byte, len(fe)+4)
	copy(b, fe)
	binary.NativeEndian.PutUint32(b[len(fe):], slot)
	return b
}

// realValue is address . port.
func realValue(r netip.AddrPort) []byte {
	a := r.Addr().AsSlice()
	b := make([]byte, len(a)+4)
	copy(b, a)
	binary.BigEndian.PutUint16(b[len(a):], r.Port())
	return b
}
