package nftables

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/arraynetworks/edgeagent/dataplane/frontends"
	"github.com/arraynetworks/edgeagent/model"
)

// entry is one service as last rendered.
type entry struct {
	vs    model.VirtualService // reals cloned, to detect change
	gen   uint64
	owner bool
	pos   int // its position in the last input (desired.prev)
	r     rendered
}

// desired is the wanted content of the table, kept between syncs: a sync
// re-renders only the services that changed and records which elements
// they touched, so changing one of 10,000 services costs a pass over the
// input and a few element writes.
type desired struct {
	gen      uint64
	services map[string]*entry
	// fronts says who owns each frontend among every service (rendered
	// or not).
	fronts *frontends.Index
	errs   map[string]error
	elems  elemSet
	// dirty: set → element keys whose wanted value may have changed since
	// the last commit. full: compare everything instead (after reading the
	// kernel), so a full sync does not build a second index of 50,000 keys.
	dirty map[string]map[string]bool
	full  bool
	// prev is the previous input, by position: the agent passes its
	// services in the same (sorted) order every time, so most services are
	// recognised by position without building their key or a map lookup.
	prev []*entry
	// removed: entries dropped by this update (their positions in prev
	// must be looked up again).
	removed map[*entry]bool
	// sigs[i] is a compact copy of what prev[i] was rendered from, in one
	// arena: the pass over 10,000 unchanged services is memory-bound, and
	// this halves what it reads (an entry's copy of the service spans
	// five cache lines, its reals another three).
	sigs     []sig
	sigReals []realSig
	// prevDup: the previous input had a key twice; the fast path does not
	// handle that.
	prevDup bool
	// vipRefs counts, per VIP (/32, /128), the programmed services using
	// it; vipDirty holds the VIPs whose count changed since the dataplane
	// last looked (Backend.Plan); v6 counts the programmed IPv6 services.
	vipRefs  map[netip.Prefix]int
	vipDirty map[netip.Prefix]bool
	v6       int
}

// sig is the part of a service that update compares.
type sig struct {
	namespace, route string
	vip              netip.Addr
	port             uint16
	protocol         model.Protocol
	policy           model.Policy
	reals            []realSig
}

type realSig struct {
	ip       netip.Addr
	port     uint16
	weight   uint32
	eligible bool
}

func (s *sig) matches(vs *model.VirtualService) bool {
	if s.port != vs.Port || s.vip != vs.VIP || s.route != vs.Route || s.namespace != vs.Namespace ||
		s.protocol != vs.Protocol || s.policy != vs.Policy || len(s.reals) != len(vs.Reals) {
		return false
	}
	for i := range s.reals {
		x, y := &s.reals[i], &vs.Reals[i]
		if x.ip != y.IP || x.port != y.Port || x.weight != y.Weight || x.eligible != (y.Healthy && !y.Terminating) {
			return false
		}
	}
	return true
}

// setSig makes sigs[i] describe vs, reusing its arena slots when the reals
// fit.
func (d *desired) setSig(i int, vs *model.VirtualService) {
	s := &d.sigs[i]
	s.namespace, s.route, s.vip, s.port, s.protocol, s.policy = vs.Namespace, vs.Route, vs.VIP, vs.Port, vs.Protocol, vs.Policy
	if cap(s.reals) < len(vs.Reals) {
		start := len(d.sigReals)
		d.sigReals = append(d.sigReals, make([]realSig, len(vs.Reals))...)
		s.reals = d.sigReals[start:len(d.sigReals):len(d.sigReals)]
	}
	s.reals = s.reals[:len(vs.Reals)]
	for k, r := range vs.Reals {
		s.reals[k] = realSig{ip: r.IP, port: r.Port, weight: r.Weight, eligible: r.Eligible()}
	}
}

func newDesired() *desired {
	return &desired{
		services: map[string]*entry{},
		fronts:   frontends.NewIndex(),
		errs:     map[string]error{},
		elems:    elemSet{},
		dirty:    map[string]map[string]bool{},
		removed:  map[*entry]bool{},
		vipRefs:  map[netip.Prefix]int{},
		vipDirty: map[netip.Prefix]bool{},
	}
}

// update makes the wanted state match services; it returns the keys of the
// services that changed (added, modified or removed). The first service of
// a key counts; a frontend belongs to the smallest key using it, so the
// verdict on a duplicate does not depend on input order.
func (d *desired) update(services []model.VirtualService) []string {
	if changed, ok := d.updateFast(services); ok {
		return changed
	}
	changed := d.updateFull(services)
	d.relayout(services)
	return changed
}

// updateFull is update by key: every service is looked up (the fast path
// falls back to it when positions moved).
func (d *desired) updateFull(services []model.VirtualService) []string {
	d.gen++
	var todo []string
	next := map[string]*model.VirtualService{}
	stamped, existing, slow := 0, 0, 0
	for i := range services {
		vs := &services[i]
		if i < len(d.prev) {
			if e := d.prev[i]; e.gen != d.gen && sameIdentity(&e.vs, vs) && sameService(&e.vs, vs) {
				e.gen = d.gen
				stamped++
				continue
			}
		}
		key := vs.Key()
		slow++
		if _, dup := next[key]; dup {
			continue
		}
		old, ok := d.services[key]
		if ok && old.gen == d.gen {
			continue
		}
		if ok && sameService(&old.vs, vs) {
			old.gen = d.gen
			stamped++
			continue
		}
		if ok {
			existing++
		}
		todo = append(todo, key)
		next[key] = vs
	}
	if len(todo) == 0 && stamped == len(d.services) && len(services) == len(d.prev) && slow == 0 {
		return nil // the common case at rest: nothing changed
	}
	var gone []string
	if stamped+existing < len(d.services) {
		for key, e := range d.services {
			if e.gen != d.gen && next[key] == nil {
				gone = append(gone, key)
			}
		}
	}
	return d.applyChanges(todo, next, gone)
}

// applyChanges re-renders the changed services (todo, with their input in
// next) and removes the gone ones, settling who owns each frontend they
// touch. It returns every key whose elements may have changed.
func (d *desired) applyChanges(todo []string, next map[string]*model.VirtualService, gone []string) []string {
	todo = d.fronts.Reassign(todo, gone, next, d.applied)
	for _, key := range gone {
		d.remove(key)
	}
	for _, key := range todo {
		vs := next[key]
		owner := d.fronts.Owner(frontends.Of(vs))
		d.remove(key)
		e := &entry{vs: *vs, gen: d.gen, owner: owner == key, pos: -1}
		e.vs.Reals = slices.Clone(vs.Reals)
		e.r = render(vs)
		if e.r.err == nil && !e.owner {
			e.r = rendered{err: fmt.Errorf("frontend %s is already used by %s", e.r.fe, owner), fe: e.r.fe}
		}
		d.add(key, e)
	}
	return append(todo, gone...)
}

// relayout records, by position, the entry and a signature of every
// service of the input, for the next update's fast path.
func (d *desired) relayout(services []model.VirtualService) {
	n := 0
	for i := range services {
		n += len(services[i].Reals)
	}
	d.prev = make([]*entry, len(services))
	d.sigs = make([]sig, len(services))
	d.sigReals = make([]realSig, 0, n)
	d.prevDup = false
	for i := range services {
		e := d.services[services[i].Key()]
		if e == nil {
			e = &entry{pos: -1} // cannot happen: every input has an entry
		}
		if e.pos >= 0 && e.pos < i && d.prev[e.pos] == e {
			d.prevDup = true // the first position keeps it
		} else {
			e.pos = i
		}
		d.prev[i] = e
		d.setSig(i, &services[i])
	}
	clear(d.removed)
}

// updateFast handles the common case without looking up every service:
// the input has the same length as the previous one and only a few
// positions differ (a real changed, a service replaced in place). ok is
// false when it cannot tell (positions moved, a key twice, many changes);
// update then falls back to updateFull, which is always right.
func (d *desired) updateFast(services []model.VirtualService) (changed []string, ok bool) {
	if len(services) == 0 || len(services) != len(d.sigs) || d.prevDup {
		return nil, false
	}
	var diff []int
	for i := range services {
		if !d.sigs[i].matches(&services[i]) {
			diff = append(diff, i)
			if len(diff) > 64 {
				return nil, false
			}
		}
	}
	if len(diff) == 0 {
		return nil, true
	}
	inDiff := map[int]bool{}
	oldKeys := map[string]bool{}
	for _, i := range diff {
		inDiff[i] = true
		oldKeys[d.prev[i].vs.Key()] = true
	}
	newKeys := make([]string, len(diff))
	seen := map[string]bool{}
	for n, i := range diff {
		key := services[i].Key()
		if seen[key] {
			return nil, false // twice in the input
		}
		seen[key] = true
		if e := d.services[key]; e != nil && !inDiff[e.pos] {
			return nil, false // it is (also) at a position that did not change
		}
		newKeys[n] = key
	}
	var todo, gone []string
	next := map[string]*model.VirtualService{}
	for key := range oldKeys {
		if !seen[key] {
			gone = append(gone, key)
		}
	}
	for n, i := range diff {
		key, vs := newKeys[n], &services[i]
		if e := d.services[key]; e != nil && sameService(&e.vs, vs) {
			continue // moved between changed positions, otherwise the same
		}
		todo = append(todo, key)
		next[key] = vs
	}
	d.gen++
	changed = d.applyChanges(todo, next, gone)
	for n, i := range diff {
		e := d.services[newKeys[n]]
		e.pos, d.prev[i] = i, e
		d.setSig(i, &services[i])
	}
	// Services re-rendered because they won or lost a frontend are new
	// entries at their old positions.
	for old := range d.removed {
		if old.pos >= 0 && old.pos < len(d.prev) && d.prev[old.pos] == old {
			if e := d.services[old.vs.Key()]; e != nil {
				e.pos, d.prev[old.pos] = old.pos, e
			}
		}
	}
	clear(d.removed)
	return changed, true
}

// sameIdentity reports whether two services have the same key.
func sameIdentity(a, b *model.VirtualService) bool {
	return a.Port == b.Port && a.Protocol == b.Protocol && a.Route == b.Route && a.Namespace == b.Namespace
}

// applied is the service as last rendered (frontends.Applied).
func (d *desired) applied(key string) (*model.VirtualService, bool, bool) {
	e, ok := d.services[key]
	if !ok {
		return nil, false, false
	}
	return &e.vs, e.owner, true
}

func (d *desired) add(key string, e *entry) {
	d.services[key] = e
	if e.r.err != nil {
		d.errs[key] = e.r.err
		return
	}
	d.refVIP(e.r.fe.VIP, 1)
	e.r.elements(func(set, k, v string) {
		d.elems.putString(set, k, v)
		d.touch(set, k)
	})
}

func (d *desired) remove(key string) {
	e, ok := d.services[key]
	if !ok {
		return
	}
	delete(d.services, key)
	delete(d.errs, key)
	d.removed[e] = true
	if e.r.err == nil {
		d.refVIP(e.r.fe.VIP, -1)
	}
	e.r.elements(func(set, k, _ string) {
		d.elems.delString(set, k)
		d.touch(set, k)
	})
}

// refVIP counts one more (n = 1) or one fewer (n = -1) programmed service
// on vip.
func (d *desired) refVIP(vip netip.Addr, n int) {
	p := netip.PrefixFrom(vip, vip.BitLen())
	if d.vipRefs[p] += n; d.vipRefs[p] <= 0 {
		delete(d.vipRefs, p)
	}
	d.vipDirty[p] = true
	if vip.Is6() {
		d.v6 += n
	}
}

func (d *desired) touch(set, key string) {
	if d.full {
		return
	}
	m := d.dirty[set]
	if m == nil {
		m = map[string]bool{}
		d.dirty[set] = m
	}
	m[key] = true
}

// markAll makes the next diff compare every element, wanted or present:
// after reading the kernel it must look at everything, including elements
// someone else added.
func (d *desired) markAll() {
	d.full = true
	d.dirty = map[string]map[string]bool{}
}

// clean forgets what changed, after a commit.
func (d *desired) clean() {
	d.full = false
	d.dirty = map[string]map[string]bool{}
}

// sameService reports whether two services render the same elements.
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
