package dataplane

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/arraynetworks/edgeagent/dataplane/frontends"
	"github.com/arraynetworks/edgeagent/model"
)

// chainRef names one chain of one family's table.
type chainRef struct {
	fam   Family
	table string
	chain string
}

// vsRender is one service's share of the rules.
type vsRender struct {
	vs       model.VirtualService // as rendered (reals cloned), to detect change
	owner    bool                 // it owns its frontend (no earlier key has it)
	gen      uint64               // last update pass that saw it
	err      error
	fe       Frontend
	fam      Family
	chains   Table  // nat chains of this service: EDGE-VS-… and EDGE-SH-…
	bucket   byte   // last byte of the VIP, for dispatch
	dispatch string // rule in the bucket chain, "" when rejecting
	reject   string // rule in filter EDGE-INPUT, "" when it has reals
}

// desired is the agent's wanted iptables state, kept between syncs: a sync
// re-renders only services that changed and rebuilds only the dispatch
// chains they sit in, so changing one of 10,000 services costs microseconds
// here and a few lines in iptables-restore.
type desired struct {
	opt    RenderOptions
	jumps  []jump
	noIPv6 error
	gen    uint64
	// fronts says who owns each frontend among every service (rendered
	// or not).
	fronts *frontends.Index
	// Kept up to date by add and remove: how many rendered services use
	// each VIP, which VIPs an update touched, the services that failed to
	// render, and how many rendered services are IPv6.
	vipRefs  map[netip.Prefix]int
	vipDirty map[netip.Prefix]bool
	errs     map[string]error
	v6       int
	services map[string]*vsRender
	rs       map[Family]Ruleset
	buckets  map[Family]map[byte]map[string]*vsRender
	rejects  map[Family]map[string]*vsRender
}

func newDesired(opt RenderOptions) *desired {
	if opt.ConnMark == 0 {
		opt.ConnMark = DefaultConnMark
	}
	d := &desired{
		opt:      opt,
		jumps:    jumpsFor(opt),
		services: map[string]*vsRender{},
		rs:       map[Family]Ruleset{IPv4: newRuleset(opt), IPv6: newRuleset(opt)},
		buckets:  map[Family]map[byte]map[string]*vsRender{IPv4: {}, IPv6: {}},
		rejects:  map[Family]map[string]*vsRender{IPv4: {}, IPv6: {}},
		vipRefs:  map[netip.Prefix]int{},
		fronts:   frontends.NewIndex(),
		vipDirty: map[netip.Prefix]bool{},
		errs:     map[string]error{},
	}
	return d
}

// update makes the desired state match services. It returns the chains
// whose rules changed (added, rewritten or gone) and the keys of services
// that changed.
func (d *desired) update(services []model.VirtualService) (map[chainRef]bool, []string) {
	dirty := map[chainRef]bool{}
	todo, next := d.changedServices(services)
	gone := d.goneServices(next)
	todo = d.fronts.Reassign(todo, gone, next, d.applied)
	for _, key := range gone {
		d.remove(key, dirty)
	}
	for _, key := range todo {
		vs := next[key]
		owner := d.fronts.Owner(frontends.Of(vs))
		d.remove(key, dirty)
		r := d.render(vs, key, owner == key, owner)
		r.gen = d.gen
		d.add(key, r, dirty)
	}
	d.rebuild(dirty)
	return dirty, append(todo, gone...)
}

// changedServices is the only pass over all services: a service equal to
// what was rendered is stamped with this pass's gen and kept as it is; the
// others are returned, by key, to be rendered.
func (d *desired) changedServices(services []model.VirtualService) ([]string, map[string]*model.VirtualService) {
	d.gen++
	var todo []string
	next := map[string]*model.VirtualService{}
	for i := range services {
		vs := &services[i]
		key := vs.Key()
		if _, dup := next[key]; dup {
			continue // the same key twice: the first one counts
		}
		old, ok := d.services[key]
		if ok && old.gen == d.gen {
			continue
		}
		if ok && sameService(&old.vs, vs) {
			old.gen = d.gen
			continue
		}
		todo = append(todo, key)
		next[key] = vs
	}
	return todo, next
}

// goneServices are the rendered services this pass neither kept nor
// changed.
func (d *desired) goneServices(next map[string]*model.VirtualService) []string {
	var gone []string
	for key, r := range d.services {
		if r.gen != d.gen && next[key] == nil {
			gone = append(gone, key)
		}
	}
	return gone
}

// applied is the service as last rendered (frontends.Applied).
func (d *desired) applied(key string) (*model.VirtualService, bool, bool) {
	r, ok := d.services[key]
	if !ok {
		return nil, false, false
	}
	return &r.vs, r.owner, true
}

func (d *desired) render(vs *model.VirtualService, key string, isOwner bool, ownerKey string) *vsRender {
	r := &vsRender{vs: *vs, owner: isOwner}
	r.vs.Reals = slices.Clone(vs.Reals)
	fe, reals, err := check(vs)
	if err == nil && !isOwner {
		err = fmt.Errorf("frontend %s is already used by %s", fe, ownerKey)
	}
	if err == nil && fe.VIP.Is6() && d.noIPv6 != nil {
		err = fmt.Errorf("IPv6 unavailable: %w", d.noIPv6)
	}
	if err != nil {
		r.err = err
		return r
	}
	r.fam = familyOf(fe.VIP)
	proto := strings.ToLower(string(fe.Protocol))
	match := fmt.Sprintf("-d %s -p %s -m comment --comment %q -m %s --dport %d",
		hostPrefix(fe.VIP), proto, comment(key), proto, fe.Port)
	eps := make([]netip.AddrPort, len(reals))
	for i, rl := range reals {
		eps[i] = rl.Endpoint()
	}
	r.fe = Frontend{Frontend: fe, Reals: eps}
	if len(reals) == 0 {
		r.reject = fmt.Sprintf("-A %s %s -j REJECT --reject-with %s", chainInput, match, rejectWith(r.fam, fe.Protocol))
		return r
	}
	vsChain := ChainPrefix + "VS-" + hash16(key)
	r.bucket = lastByte(fe.VIP)
	r.dispatch = fmt.Sprintf("-A %s %s -j %s", bucketChain(r.fam, r.bucket), match, vsChain)
	r.chains = Table{}
	r.chains[vsChain] = []string{fmt.Sprintf("-A %s -j CONNMARK --set-xmark %#x/%#x", vsChain, d.opt.ConnMark, d.opt.ConnMark)}
	renderPolicy(r.chains, vsChain, key, vs.Policy, proto, reals)
	return r
}

func (d *desired) add(key string, r *vsRender, dirty map[chainRef]bool) {
	d.services[key] = r
	if r.err != nil {
		d.errs[key] = r.err
		return
	}
	vip := netip.PrefixFrom(r.fe.VIP, r.fe.VIP.BitLen())
	d.vipRefs[vip]++
	d.vipDirty[vip] = true
	if r.fam == IPv6 {
		d.v6++
	}
	nat := d.rs[r.fam][tableNat]
	for c, rules := range r.chains {
		nat[c] = rules
		dirty[chainRef{r.fam, tableNat, c}] = true
	}
	if r.reject != "" {
		d.rejects[r.fam][key] = r
		dirty[chainRef{r.fam, tableFilter, chainInput}] = true
	}
	if r.dispatch != "" {
		b := d.buckets[r.fam][r.bucket]
		if b == nil {
			b = map[string]*vsRender{}
			d.buckets[r.fam][r.bucket] = b
		}
		b[key] = r
		dirty[chainRef{r.fam, tableNat, bucketChain(r.fam, r.bucket)}] = true
	}
}

func (d *desired) remove(key string, dirty map[chainRef]bool) {
	r, ok := d.services[key]
	if !ok {
		return
	}
	delete(d.services, key)
	if r.err != nil {
		delete(d.errs, key)
		return
	}
	vip := netip.PrefixFrom(r.fe.VIP, r.fe.VIP.BitLen())
	if d.vipRefs[vip]--; d.vipRefs[vip] <= 0 {
		delete(d.vipRefs, vip)
	}
	d.vipDirty[vip] = true
	if r.fam == IPv6 {
		d.v6--
	}
	nat := d.rs[r.fam][tableNat]
	for c := range r.chains {
		delete(nat, c)
		dirty[chainRef{r.fam, tableNat, c}] = true
	}
	if r.reject != "" {
		delete(d.rejects[r.fam], key)
		dirty[chainRef{r.fam, tableFilter, chainInput}] = true
	}
	if r.dispatch != "" {
		delete(d.buckets[r.fam][r.bucket], key)
		dirty[chainRef{r.fam, tableNat, bucketChain(r.fam, r.bucket)}] = true
	}
}

// rebuild regenerates the dispatch chains above dirty buckets and the reject
// chain, each in a stable order.
func (d *desired) rebuild(dirty map[chainRef]bool) {
	for _, fam := range []Family{IPv4, IPv6} {
		nat := d.rs[fam][tableNat]
		his := map[byte]bool{}
		for v := 0; v < 256; v++ {
			ref := chainRef{fam, tableNat, bucketChain(fam, byte(v))}
			if !dirty[ref] {
				continue
			}
			his[byte(v)>>4] = true
			members := slices.Collect(maps.Values(d.buckets[fam][byte(v)]))
			if len(members) == 0 {
				delete(d.buckets[fam], byte(v))
				delete(nat, ref.chain)
				continue
			}
			slices.SortFunc(members, func(a, b *vsRender) int { return compareFrontend(a.fe.Frontend, b.fe.Frontend) })
			rules := make([]string, len(members))
			for i, m := range members {
				rules[i] = m.dispatch
			}
			nat[ref.chain] = rules
		}
		if len(his) > 0 {
			for hi := range his {
				c := fmt.Sprintf("%sH%d-%x", ChainPrefix, fam, hi)
				var rules []string
				for lo := range 16 {
					v := hi<<4 | byte(lo)
					if _, ok := d.buckets[fam][v]; ok {
						rules = append(rules, fmt.Sprintf("-A %s -d %s -j %s", c, byteMask(fam, v, 0xff), bucketChain(fam, v)))
					}
				}
				if rules == nil {
					delete(nat, c)
				} else {
					nat[c] = rules
				}
				dirty[chainRef{fam, tableNat, c}] = true
			}
			var rules []string
			for hi := range 16 {
				c := fmt.Sprintf("%sH%d-%x", ChainPrefix, fam, hi)
				if _, ok := nat[c]; ok {
					rules = append(rules, fmt.Sprintf("-A %s -d %s -j %s", chainServices, byteMask(fam, byte(hi<<4), 0xf0), c))
				}
			}
			nat[chainServices] = rules
			dirty[chainRef{fam, tableNat, chainServices}] = true
		}
		if dirty[chainRef{fam, tableFilter, chainInput}] {
			keys := slices.Sorted(maps.Keys(d.rejects[fam]))
			rules := make([]string, len(keys))
			for i, k := range keys {
				rules[i] = d.rejects[fam][k].reject
			}
			d.rs[fam][tableFilter][chainInput] = rules
		}
	}
}

func bucketChain(fam Family, v byte) string { return fmt.Sprintf("%sB%d-%02x", ChainPrefix, fam, v) }

// sameService reports whether two services render the same rules.
func sameService(a, b *model.VirtualService) bool {
	if a.VIP != b.VIP || a.Port != b.Port || a.Protocol != b.Protocol || a.Policy != b.Policy ||
		a.Namespace != b.Namespace || a.Route != b.Route || len(a.Reals) != len(b.Reals) {
		return false
	}
	for i := range a.Reals {
		x, y := &a.Reals[i], &b.Reals[i]
		if x.IP != y.IP || x.Port != y.Port || x.Weight != y.Weight || x.Eligible() != y.Eligible() {
			return false
		}
	}
	return true
}

// newRuleset holds the base chains, present even with no services.
func newRuleset(opt RenderOptions) Ruleset {
	rs := Ruleset{
		tableNat: Table{chainServices: nil, chainPostrouting: nil},
		tableFilter: Table{chainInput: nil, chainForward: {fmt.Sprintf("-A %s -m connmark --mark %#x/%#x -j ACCEPT",
			chainForward, opt.ConnMark, opt.ConnMark)}},
	}
	if opt.Masquerade {
		rs[tableNat][chainPostrouting] = []string{fmt.Sprintf("-A %s -m connmark --mark %#x/%#x -j MASQUERADE",
			chainPostrouting, opt.ConnMark, opt.ConnMark)}
	}
	return rs
}
