package bgp

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/arraynetworks/edgeagent/model"
)

// Pure translation of desired state into GoBGP's API values. Nothing here
// talks to the server, so every function is covered by table and golden
// tests.

const (
	exportPolicyName    = "edgeagent-export-local-only"
	exportStatementName = "edgeagent-accept-local"
	// deferralTime bounds how long GoBGP holds our updates after a restart
	// while it waits for the peers' End-of-RIB (RFC 4724 selection
	// deferral). Peers send theirs right after the session comes up, so
	// this only matters when one never does.
	deferralTime = 10 * time.Second
)

func family(a netip.Addr) *api.Family {
	if a.Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

func seconds(d time.Duration) uint64 { return uint64((d + time.Second - 1) / time.Second) }

// globalAPI is the StartBgp request for the speaker.
func globalAPI(c Config, routerID string) *api.Global {
	g := &api.Global{
		Asn:             c.ASN,
		RouterId:        routerID,
		ListenPort:      c.ListenPort,
		ListenAddresses: slices.Clone(c.ListenAddresses),
	}
	return g
}

// peerAPI translates one peer (defaults applied) into GoBGP's form.
// restarting sets the Restart State and Forwarding State bits of the
// graceful-restart capability: our forwarding state (the kernel's VIPs and
// NAT rules) survives an agent restart, and peers that see the bits keep
// our stale routes until our End-of-RIB instead of flushing them.
func peerAPI(p Peer, c Config, restarting bool) *api.Peer {
	fam := family(p.Address)
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
			Description:     p.Source,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          seconds(p.HoldTime),
			KeepaliveInterval: seconds(p.Keepalive),
			ConnectRetry:      seconds(c.ConnectRetry),
			// Idle time after we reset a session ourselves; failures are
			// paced by the speaker's own backoff (supervise.go).
			IdleHoldTimeAfterReset: 5,
		}},
		Transport: &api.Transport{
			PassiveMode: p.Passive,
			RemotePort:  uint32(p.Port),
		},
		AfiSafis: []*api.AfiSafi{{
			Config: &api.AfiSafiConfig{Family: fam, Enabled: true},
		}},
	}
	if p.LocalAddress.IsValid() {
		ap.Transport.LocalAddress = p.LocalAddress.String()
	}
	if c.GracefulRestart {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(seconds(c.RestartTime)),
			DeferralTime:    uint32(seconds(deferralTime)),
			LocalRestarting: restarting,
		}
		ap.AfiSafis[0].MpGracefulRestart = &api.MpGracefulRestart{
			Config: &api.MpGracefulRestartConfig{Enabled: true},
		}
	}
	return ap
}

// exportPolicy lets only locally originated paths (our VIPs) out: the edge
// node is not a transit router, so routes learned from one peer (Calico's
// pod blocks, an upstream default) are never passed on to another.
func exportPolicy() (*api.Policy, *api.PolicyAssignment) {
	pol := &api.Policy{
		Name: exportPolicyName,
		Statements: []*api.Statement{{
			Name:       exportStatementName,
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
		}},
	}
	asg := &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_EXPORT,
		Policies:      []*api.Policy{{Name: exportPolicyName}},
		DefaultAction: api.RouteAction_REJECT,
	}
	return pol, asg
}

// wellKnownCommunities are the RFC 1997 / 7999 / 8326 / 8642 names an
// LBRoute may use instead of "ASN:VALUE".
var wellKnownCommunities = map[string]uint32{
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"no-peer":             0xFFFFFF04,
	"blackhole":           0xFFFF029A,
	"graceful-shutdown":   0xFFFF0000,
	"accept-own":          0xFFFF0001,
	"llgr-stale":          0xFFFF0006,
	"no-llgr":             0xFFFF0007,
}

// parseCommunity reads "ASN:VALUE" (each 0-65535), a well-known name, or a
// plain 32-bit number.
func parseCommunity(s string) (uint32, error) {
	if v, ok := wellKnownCommunities[strings.ToLower(strings.TrimSpace(s))]; ok {
		return v, nil
	}
	hi, lo, found := strings.Cut(s, ":")
	if !found {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("community %q: want ASN:VALUE (0-65535 each) or a well-known name", s)
		}
		return uint32(v), nil
	}
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: want ASN:VALUE with each part 0-65535", s)
	}
	return uint32(a)<<16 | uint32(b), nil
}

// parseLargeCommunity reads "ASN:X:Y" (RFC 8092, three 32-bit numbers).
func parseLargeCommunity(s string) (*bgp.LargeCommunity, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("large community %q: want ASN:X:Y", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("large community %q: part %d is not a 32-bit number", s, i+1)
		}
		v[i] = uint32(n)
	}
	return bgp.NewLargeCommunity(v[0], v[1], v[2]), nil
}

// vipNLRI is the host route of a VIP route.
func vipNLRI(p netip.Prefix) bgp.AddrPrefixInterface {
	if p.Addr().Is4() {
		return bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String())
	}
	return bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())
}

// vipAttrs returns the path attributes for a VIP route. The next hop is
// the unspecified address, which GoBGP replaces with each session's local
// address: every peer learns the VIP via this node.
func vipAttrs(r model.VIPRoute) ([]bgp.PathAttributeInterface, error) {
	p := r.Prefix
	if !p.IsValid() || p.Bits() != p.Addr().BitLen() {
		return nil, errors.New("a VIP route must be a host route (/32 or /128)")
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if p.Addr().Is4() {
		attrs = append(attrs, bgp.NewPathAttributeNextHop("0.0.0.0"))
	} else {
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI("::", []bgp.AddrPrefixInterface{vipNLRI(p)}))
	}
	if lp := r.Attrs.LocalPref; lp != nil {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(*lp))
	}
	var errs []error
	if len(r.Attrs.Communities) > 0 {
		var cs []uint32
		for _, s := range r.Attrs.Communities {
			v, err := parseCommunity(s)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			cs = append(cs, v)
		}
		slices.Sort(cs)
		cs = slices.Compact(cs)
		if len(cs) > 0 {
			attrs = append(attrs, bgp.NewPathAttributeCommunities(cs))
		}
	}
	if len(r.Attrs.LargeCommunities) > 0 {
		var ls []*bgp.LargeCommunity
		for _, s := range r.Attrs.LargeCommunities {
			v, err := parseLargeCommunity(s)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ls = append(ls, v)
		}
		slices.SortFunc(ls, func(a, b *bgp.LargeCommunity) int {
			return cmp.Or(cmp.Compare(a.ASN, b.ASN), cmp.Compare(a.LocalData1, b.LocalData1), cmp.Compare(a.LocalData2, b.LocalData2))
		})
		ls = slices.CompactFunc(ls, func(a, b *bgp.LargeCommunity) bool { return *a == *b })
		if len(ls) > 0 {
			attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(ls))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return attrs, nil
}

// vipPath is the AddPath form of a VIP route.
func vipPath(r model.VIPRoute) (*api.Path, error) {
	attrs, err := vipAttrs(r)
	if err != nil {
		return nil, err
	}
	return apiutil.NewPath(vipNLRI(r.Prefix), false, attrs, time.Time{})
}

// withdrawPath is the DeletePath form of a VIP route. Deleting by path
// (not by UUID, which GoBGP resolves by scanning the whole RIB) keeps
// withdrawing 10,000 VIPs linear.
func withdrawPath(p netip.Prefix) (*api.Path, error) {
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if p.Addr().Is4() {
		attrs = append(attrs, bgp.NewPathAttributeNextHop("0.0.0.0"))
	} else {
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI("::", []bgp.AddrPrefixInterface{vipNLRI(p)}))
	}
	return apiutil.NewPath(vipNLRI(p), true, attrs, time.Time{})
}

// attrKey is a canonical string of a VIP route's attributes: equal keys
// mean no update needs to be sent.
func attrKey(r model.VIPRoute) string {
	var b strings.Builder
	if r.Attrs.LocalPref != nil {
		fmt.Fprintf(&b, "lp=%d;", *r.Attrs.LocalPref)
	}
	c := slices.Clone(r.Attrs.Communities)
	slices.Sort(c)
	l := slices.Clone(r.Attrs.LargeCommunities)
	slices.Sort(l)
	fmt.Fprintf(&b, "c=%s;l=%s", strings.Join(c, ","), strings.Join(l, ","))
	return b.String()
}

// peerChanges is the difference between the peers GoBGP has and the ones
// wanted.
type peerChanges struct {
	Add    []Peer
	Delete []Peer
	// Replace holds the new version of peers whose settings changed; each
	// is deleted and re-added, which resets that session alone.
	Replace []Peer
}

// diffPeers compares the current peers (by address) with the wanted ones
// (defaults already applied). A duplicate address in want is an error
// naming it; the first entry wins.
func diffPeers(cur map[netip.Addr]Peer, want []Peer) (peerChanges, error) {
	var ch peerChanges
	var errs []error
	seen := map[netip.Addr]bool{}
	for _, p := range want {
		if seen[p.Address] {
			errs = append(errs, fmt.Errorf("peer %s (%s): listed twice, keeping the first", p.Address, p.Source))
			continue
		}
		seen[p.Address] = true
		old, ok := cur[p.Address]
		switch {
		case !ok:
			ch.Add = append(ch.Add, p)
		case old != p:
			ch.Replace = append(ch.Replace, p)
		}
	}
	for a, p := range cur {
		if !seen[a] {
			ch.Delete = append(ch.Delete, p)
		}
	}
	byAddr := func(a, b Peer) int { return a.Address.Compare(b.Address) }
	slices.SortFunc(ch.Add, byAddr)
	slices.SortFunc(ch.Delete, byAddr)
	slices.SortFunc(ch.Replace, byAddr)
	return ch, errors.Join(errs...)
}

// mergePeers is the configured peers followed by the discovered ones whose
// address no configured peer (nor an earlier discovered one) has.
func mergePeers(configured, discovered []Peer) []Peer {
	out := slices.Clone(configured)
	seen := map[netip.Addr]bool{}
	for _, p := range configured {
		seen[p.Address.Unmap()] = true
	}
	for _, p := range discovered {
		if a := p.Address.Unmap(); !seen[a] {
			seen[a] = true
			out = append(out, p)
		}
	}
	return out
}

// validatePeer checks one peer after defaults.
func validatePeer(p Peer) error {
	switch {
	case !p.Address.IsValid():
		return errors.New("peer address: not set")
	case p.Address.IsUnspecified() || p.Address.IsMulticast():
		return fmt.Errorf("peer %s: address must be a unicast address", p.Address)
	case p.HoldTime != 0 && p.HoldTime < 3*time.Second:
		return fmt.Errorf("peer %s: holdTime %s must be at least 3s", p.Address, p.HoldTime)
	case p.Keepalive > p.HoldTime:
		return fmt.Errorf("peer %s: keepaliveTime %s exceeds holdTime %s", p.Address, p.Keepalive, p.HoldTime)
	case len(p.Password) > 80:
		return fmt.Errorf("peer %s: password longer than 80 bytes (TCP MD5 limit)", p.Address)
	case p.LocalAddress.IsValid() && p.LocalAddress.Is4() != p.Address.Is4():
		return fmt.Errorf("peer %s: localAddress %s is of another address family", p.Address, p.LocalAddress)
	}
	return nil
}
