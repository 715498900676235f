package dataplane

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/arraynetworks/edgeagent/dataplane/slots"
	"github.com/arraynetworks/edgeagent/model"
)

// Chain and rule naming. Every object the agent owns in iptables carries the
// ChainPrefix, and every chain name is a pure function of the desired state
// (a virtual-service key, a VIP byte), so a restarted agent computes the same
// names and finds nothing to change.
const (
	ChainPrefix = "EDGE-"

	chainServices    = "EDGE-SERVICES"    // nat: entry from PREROUTING and OUTPUT
	chainPostrouting = "EDGE-POSTROUTING" // nat: masquerade of DNATed traffic
	chainInput       = "EDGE-INPUT"       // filter: reject for services without reals
	chainForward     = "EDGE-FORWARD"     // filter: accept the agent's connections

	// maxWRRSlots bounds the rules one wrr service renders to; larger
	// weight sums are apportioned over this many slots.
	maxWRRSlots = 256
	// clusterMaxNodes is xt_cluster's node limit (XT_CLUSTER_NODES_MAX).
	clusterMaxNodes = 32
)

// Family is an IP family, one iptables binary each.
type Family int

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string { return fmt.Sprintf("IPv%d", int(f)) }

// Tables the agent writes.
const (
	tableNat    = "nat"
	tableFilter = "filter"
)

var tables = []string{tableFilter, tableNat}

// jump is a rule in a built-in chain that enters one of the agent's chains.
type jump struct {
	table, chain, rule string
}

// allJumps are inserted at the top of their built-in chain, so VIP traffic
// is load-balanced before anyone else's NAT rules see it (as kube-proxy
// does).
var allJumps = []jump{
	{tableNat, "PREROUTING", `-A PREROUTING -m comment --comment "edgeagent: virtual services" -j EDGE-SERVICES`},
	{tableNat, "OUTPUT", `-A OUTPUT -m comment --comment "edgeagent: virtual services" -j EDGE-SERVICES`},
	{tableNat, "POSTROUTING", `-A POSTROUTING -m comment --comment "edgeagent: masquerade" -j EDGE-POSTROUTING`},
	{tableFilter, "INPUT", `-A INPUT -m comment --comment "edgeagent: reject services without reals" -j EDGE-INPUT`},
	{tableFilter, "FORWARD", `-A FORWARD -m comment --comment "edgeagent: load-balanced connections" -j EDGE-FORWARD`},
}

// jumpsFor returns the jumps wanted: all of them, or all but OUTPUT when
// processes on the node need not reach VIPs.
func jumpsFor(opt RenderOptions) []jump {
	if !opt.NoLocalTraffic {
		return allJumps
	}
	return slices.DeleteFunc(slices.Clone(allJumps), func(j jump) bool { return j.chain == "OUTPUT" })
}

// Table is the agent's part of one iptables table: chain name → rules, each
// rule exactly as iptables-save prints it ("-A CHAIN ...").
type Table map[string][]string

// Ruleset is the agent's part of one family's tables, keyed by table name.
type Ruleset map[string]Table

// Rules counts the rules in the ruleset.
func (rs Ruleset) Rules() int {
	n := 0
	for _, t := range rs {
		for _, rules := range t {
			n += len(rules)
		}
	}
	return n
}

// Format prints the ruleset as iptables-restore input: tables in order,
// chains sorted, the way iptables-save orders them. Used for golden files.
func (rs Ruleset) Format(jumps []jump) string {
	var b strings.Builder
	for _, name := range tables {
		t := rs[name]
		if t == nil {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", name)
		chains := sortedKeys(t)
		for _, c := range chains {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, j := range jumps {
			if j.table == name {
				b.WriteString(j.rule + "\n")
			}
		}
		for _, c := range chains {
			for _, r := range t[c] {
				b.WriteString(r + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// RenderOptions tune the rendering.
type RenderOptions struct {
	// NoLocalTraffic leaves out the jump from nat OUTPUT: processes on the
	// node itself cannot reach VIPs, and every sync's kernel-side rule
	// validation, which walks all rules once per hook that reaches them,
	// costs half (see docs/benchmarks/dataplane.md).
	NoLocalTraffic bool
	// Masquerade source-NATs DNATed traffic to the outgoing interface's
	// address, so replies come back through this node.
	Masquerade bool
	// ConnMark is the conntrack-mark bit set on every connection the agent
	// load-balances: EDGE-POSTROUTING masquerades it (when Masquerade is on)
	// and EDGE-FORWARD accepts it, so load balancing works on hosts whose
	// FORWARD policy is DROP. A conntrack mark, unlike the packet mark,
	// leaves routing alone and covers every packet of the connection.
	ConnMark uint32
}

// DefaultConnMark is the conntrack-mark bit used when none is configured.
const DefaultConnMark = 0x2000

// Rendered is the desired iptables state for a set of virtual services.
type Rendered struct {
	V4, V6 Ruleset
	// Jumps are the rules in built-in chains that enter V4 and V6.
	Jumps []jump
	// Programmed holds the keys that rendered; Errors the ones that did not,
	// with the reason. A bad service never keeps the others from rendering.
	Programmed map[string]bool
	Errors     map[string]error
	// Frontends maps each rendered key to its frontend and the reals that
	// receive new connections (for conntrack clean-up).
	Frontends map[string]Frontend
}

// Frontend is what the applier remembers about a rendered service.
type Frontend struct {
	model.Frontend
	Reals []netip.AddrPort
}

// Family returns the ruleset for f.
func (r *Rendered) Family(f Family) Ruleset {
	if f == IPv4 {
		return r.V4
	}
	return r.V6
}

// Render computes the agent's iptables rules for the desired services. It is
// pure: the same input always gives the same rules and chain names. It is
// the from-scratch form of the incremental desired state the Dataplane keeps
// (see desired.update), so the two cannot disagree.
//
// Layout per family (nat table):
//
//	PREROUTING, OUTPUT → EDGE-SERVICES   dispatch on the high nibble of the VIP's last byte
//	  EDGE-H4-<n>                        dispatch on the whole last byte
//	    EDGE-B4-<nn>                     one rule per service whose VIP ends in nn
//	      EDGE-VS-<hash(key)>            connection mark, then the policy's DNAT rules
//	POSTROUTING → EDGE-POSTROUTING       MASQUERADE marked connections
//	filter: FORWARD → EDGE-FORWARD accepts marked connections, INPUT → EDGE-INPUT rejects
//
// The two dispatch levels keep a new connection to the 10,000th VIP from
// walking 10,000 rules: it walks at most 16 + 16 + the services sharing its
// last byte. Services with no eligible real get no nat rules; their packets
// reach INPUT, where filter EDGE-INPUT rejects them (REJECT is not valid in
// nat).
func Render(services []model.VirtualService, opt RenderOptions) *Rendered {
	d := newDesired(opt)
	d.update(services)
	out := &Rendered{
		V4:         d.rs[IPv4],
		V6:         d.rs[IPv6],
		Jumps:      jumpsFor(opt),
		Programmed: map[string]bool{},
		Errors:     map[string]error{},
		Frontends:  map[string]Frontend{},
	}
	for key, r := range d.services {
		if r.err != nil {
			out.Errors[key] = r.err
			continue
		}
		out.Programmed[key] = true
		out.Frontends[key] = r.fe
	}
	return out
}

// check validates a service and returns its frontend and the reals that get
// new connections, sorted.
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
	var reals []model.Real
	seen := map[netip.AddrPort]bool{}
	for i, r := range vs.Reals {
		r.IP = r.IP.Unmap()
		if !r.IP.IsValid() || r.Port == 0 {
			return fe, nil, fmt.Errorf("reals[%d] %s: needs an address and a port", i, r.Endpoint())
		}
		if r.IP.Is4() != fe.VIP.Is4() {
			return fe, nil, fmt.Errorf("reals[%d] %s: address family differs from vip %s", i, r.IP, fe.VIP)
		}
		if !r.Eligible() || seen[r.Endpoint()] {
			continue
		}
		seen[r.Endpoint()] = true
		reals = append(reals, r)
	}
	slices.SortFunc(reals, func(a, b model.Real) int { return a.Endpoint().Compare(b.Endpoint()) })
	return fe, reals, nil
}

// renderPolicy appends the DNAT rules that spread new connections of one
// service over its reals. The last rule is always unconditional, so a packet
// that entered the chain is always DNATed.
func renderPolicy(nat Table, chain, key string, policy model.Policy, proto string, reals []model.Real) {
	dnat := func(r model.Real) string {
		return "-j DNAT --to-destination " + r.Endpoint().String()
	}
	add := func(c, cond, target string) {
		nat[c] = append(nat[c], strings.Join(slices.DeleteFunc([]string{"-A", c, "-p", proto, cond, target},
			func(s string) bool { return s == "" }), " "))
	}
	if len(reals) == 1 {
		add(chain, "", dnat(reals[0]))
		return
	}
	switch policy {
	case model.Random:
		// Rule i sees only what rules before it left, so it takes
		// w_i / (w_i + ... + w_n): the cumulative probabilities multiply out
		// to w_i / W for every real.
		rest := uint64(0)
		for _, r := range reals {
			rest += uint64(weight(r))
		}
		for i, r := range reals {
			if i == len(reals)-1 {
				add(chain, "", dnat(r))
				break
			}
			add(chain, "-m statistic --mode random --probability "+probability(float64(weight(r))/float64(rest)), dnat(r))
			rest -= uint64(weight(r))
		}
	case model.SourceHash:
		renderSourceHash(nat, chain, key, 0, proto, reals, add, dnat)
	default: // rr, wrr
		w := make([]uint64, len(reals))
		for i, r := range reals {
			w[i] = 1
			if policy == model.WeightedRoundRobin {
				w[i] = uint64(weight(r))
			}
		}
		order := slots.Smooth(slots.Apportion(w, max(maxWRRSlots, len(w))))
		// An nth cascade: rule k matches 1 of every (S-k) packets reaching
		// it, so each cycle of S new connections visits every slot once and
		// each real gets exactly its share.
		for k, ri := range order {
			if k == len(order)-1 {
				add(chain, "", dnat(reals[ri]))
				break
			}
			add(chain, fmt.Sprintf("-m statistic --mode nth --every %d --packet 0", len(order)-k), dnat(reals[ri]))
		}
	}
}

// renderSourceHash uses xt_cluster, which hashes the connection's original
// source address (jhash with a seed) into up to 32 buckets: the same client
// always lands on the same real, clients spread over all reals by weight, and
// unlike HMARK it does not overwrite the packet mark. More than 32 reals are
// split into groups, each its own chain hashed again with another seed.
// Over IPv6 the kernel hashes only the address's top 32 bits
// (xt_cluster_hash_ipv6), so clients inside one /32 share a real; the
// nftables backend hashes the whole address (docs/dataplane.md).
func renderSourceHash(nat Table, chain, key string, level int, proto string, reals []model.Real,
	add func(c, cond, target string), dnat func(model.Real) string) {
	seed := seed32(fmt.Sprintf("%s#%d", key, level))
	type target struct {
		weight uint64
		jump   string
	}
	var targets []target
	if len(reals) <= clusterMaxNodes {
		for _, r := range reals {
			targets = append(targets, target{uint64(weight(r)), dnat(r)})
		}
	} else {
		groups := (len(reals) + clusterMaxNodes - 1) / clusterMaxNodes
		for g := range groups {
			lo, hi := g*len(reals)/groups, (g+1)*len(reals)/groups
			sub := ChainPrefix + "SH-" + hash16(fmt.Sprintf("%s#%d.%d", key, level, g))
			nat[sub] = nil
			var w uint64
			for _, r := range reals[lo:hi] {
				w += uint64(weight(r))
			}
			targets = append(targets, target{w, "-j " + sub})
			renderSourceHash(nat, sub, key, level+1, proto, reals[lo:hi], add, dnat)
		}
	}
	w := make([]uint64, len(targets))
	for i, t := range targets {
		w[i] = t.weight
	}
	counts := slots.Apportion(w, clusterMaxNodes)
	total := 0
	for _, c := range counts {
		total += c
	}
	// One rule per bucket, with --cluster-local-node: iptables 1.8.9 takes
	// a --cluster-local-nodemask only up to 32 (its range check is the
	// node count's), so a mask naming bucket 7 or above fails the whole
	// restore. iptables-save prints the mask form back; parseSave turns it
	// into this one (clusterNodeForm).
	node := 0
	for i, t := range targets {
		if i == len(targets)-1 {
			add(chain, "", t.jump)
			break
		}
		for range counts[i] {
			node++
			add(chain, fmt.Sprintf("-m cluster --cluster-local-node %d --cluster-total-nodes %d --cluster-hash-seed 0x%08x",
				node, total, seed), t.jump)
		}
	}
}

// clusterMask matches the one-bit --cluster-local-nodemask iptables-save
// prints for a rule written with --cluster-local-node.
var clusterMask = regexp.MustCompile(`--cluster-local-nodemask 0x([0-9a-f]{8})`)

// clusterNodeForm rewrites a saved rule's one-bit cluster node mask into
// the --cluster-local-node form the agent writes, so an adopted sh chain
// compares equal to its rendering. Other masks are left alone (not the
// agent's: the next diff rewrites the chain).
func clusterNodeForm(rule string) string {
	if !strings.Contains(rule, "--cluster-local-nodemask") {
		return rule
	}
	return clusterMask.ReplaceAllStringFunc(rule, func(m string) string {
		v, err := strconv.ParseUint(clusterMask.FindStringSubmatch(m)[1], 16, 32)
		if err != nil || v == 0 || v&(v-1) != 0 {
			return m
		}
		return fmt.Sprintf("--cluster-local-node %d", bits.TrailingZeros64(v)+1)
	})
}

// weight treats an unset weight as 1.
func weight(r model.Real) uint32 { return max(r.Weight, 1) }

// probability renders p the way iptables-save prints it back (xt_statistic
// stores round(p·2³¹) and prints it with 11 decimals), so rendered rules
// compare equal to what the kernel reports.
func probability(p float64) string {
	v := math.Round(p * 0x80000000)
	return fmt.Sprintf("%.11f", v/0x80000000)
}

func rejectWith(f Family, p model.Protocol) string {
	switch {
	case p == model.TCP:
		return "tcp-reset"
	case f == IPv4:
		return "icmp-port-unreachable"
	default:
		return "icmp6-port-unreachable"
	}
}

// byteMask matches the VIP's last byte (under mask) with a non-contiguous
// address mask; iptables-nft compiles it to a native payload comparison.
func byteMask(f Family, v, mask byte) string {
	if f == IPv4 {
		return fmt.Sprintf("0.0.0.%d/0.0.0.%d", v&mask, mask)
	}
	return fmt.Sprintf("::%x/::%x", v&mask, mask)
}

func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

func lastByte(a netip.Addr) byte {
	s := a.AsSlice()
	return s[len(s)-1]
}

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func compareFrontend(a, b model.Frontend) int {
	if c := a.VIP.Compare(b.VIP); c != 0 {
		return c
	}
	if c := strings.Compare(string(a.Protocol), string(b.Protocol)); c != 0 {
		return c
	}
	return int(a.Port) - int(b.Port)
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// hash16 is a 16-character name component derived from s (80 bits of
// SHA-256, as kube-proxy names its chains).
func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return b32.EncodeToString(sum[:])[:16]
}

func seed32(s string) uint32 {
	sum := sha256.Sum256([]byte("seed:" + s))
	return binary.BigEndian.Uint32(sum[:4])
}

// comment keeps a rule comment to characters iptables prints back verbatim.
func comment(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("._:/-", c) >= 0:
		default:
			b[i] = '_'
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
