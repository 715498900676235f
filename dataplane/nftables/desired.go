package nftables

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/arraynetworks/edgeagent/model"
)

// entry is one service as last rendered.
type entry struct {
	vs    model.VirtualService // reals cloned, to detect change
	gen   uint64
	owner bool
	r     rendered
}

// desired is the wanted content of the table, kept between syncs: a sync
// re-renders only the services that changed and records which elements
// they touched, so changing one of 10,000 services costs a pass over the
// input and a few element writes.
type desired struct {
	gen      uint64
	services map[string]*entry
	// fronts indexes every service (rendered or not) by frontend.
	fronts map[model.Frontend]map[string]bool
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
}

func newDesired() *desired {
	return &desired{
		services: map[string]*entry{},
		fronts:   map[model.Frontend]map[string]bool{},
		errs:     map[string]error{},
		elems:    elemSet{},
		dirty:    map[string]map[string]bool{},
		removed:  map[*entry]bool{},
	}
}

// update makes the wanted state match services; it returns the keys of the
// services that changed (added, modified or removed). The first service of
// a key counts; a frontend belongs to the smallest key using it, so the
// verdict on a duplicate does not depend on input order.
func (d *desired) update(services []model.VirtualService) []string {
	d.gen++
	var todo []string
	next := map[string]*model.VirtualService{}
	// slow: positions recognised by key rather than by position.
	type slowPos struct {
		i   int
		key string
	}
	var slow []slowPos
	stamped, existing := 0, 0
	for i := range services {
		vs := &services[i]
		if i < len(d.prev) {
			if e := d.prev[i]; e.gen != d.gen && sameIdentity(&e.vs, vs) && sameService(&e.vs, vs) {
				e.gen = d.gen
				stamped++
				continue
			}
		}
		key := serviceKey(vs)
		slow = append(slow, slowPos{i, key})
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
	if len(todo) == 0 && stamped == len(d.services) && len(services) == len(d.prev) && len(slow) == 0 {
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
	touched := map[model.Frontend]bool{}
	for _, key := range append(slices.Clone(todo), gone...) {
		if e, ok := d.services[key]; ok {
			fe := frontendOf(&e.vs)
			delete(d.fronts[fe], key)
			if len(d.fronts[fe]) == 0 {
				delete(d.fronts, fe)
			}
			touched[fe] = true
		}
	}
	for _, key := range todo {
		fe := frontendOf(next[key])
		if d.fronts[fe] == nil {
			d.fronts[fe] = map[string]bool{}
		}
		d.fronts[fe][key] = true
		touched[fe] = true
	}
	for fe := range touched {
		owner := d.ownerOf(fe)
		for key := range d.fronts[fe] {
			if e, ok := d.services[key]; ok && next[key] == nil && e.owner != (key == owner) {
				// An unchanged service won or lost its frontend.
				vs := e.vs
				next[key] = &vs
				todo = append(todo, key)
			}
		}
	}
	for _, key := range gone {
		d.remove(key)
	}
	for _, key := range todo {
		vs := next[key]
		owner := d.ownerOf(frontendOf(vs))
		d.remove(key)
		e := &entry{vs: *vs, gen: d.gen, owner: owner == key}
		e.vs.Reals = slices.Clone(vs.Reals)
		e.r = render(vs)
		if e.r.err == nil && !e.owner {
			e.r = rendered{err: fmt.Errorf("frontend %s is already used by %s", e.r.fe, owner), fe: e.r.fe}
		}
		d.add(key, e)
	}
	// Positions for the next pass: unchanged ones keep their entry, the
	// others get the (new) entry of their key.
	prev := make([]*entry, len(services))
	for i := range prev {
		if i < len(d.prev) {
			prev[i] = d.prev[i]
		}
	}
	for _, sp := range slow {
		prev[sp.i] = d.services[sp.key]
	}
	for i, e := range prev {
		if e == nil || d.removed[e] {
			// A position whose entry was replaced (e.g. it lost or won its
			// frontend): look it up.
			prev[i] = d.services[serviceKey(&services[i])]
		}
		if prev[i] == nil {
			prev[i] = &entry{} // never matches: looked up by key next time
		}
	}
	d.prev = prev
	clear(d.removed)
	return append(todo, gone...)
}

// sameIdentity reports whether two services have the same key.
func sameIdentity(a, b *model.VirtualService) bool {
	return a.Port == b.Port && a.Protocol == b.Protocol && a.Route == b.Route && a.Namespace == b.Namespace
}

func (d *desired) ownerOf(fe model.Frontend) string {
	owner := ""
	for key := range d.fronts[fe] {
		if owner == "" || key < owner {
			owner = key
		}
	}
	return owner
}

func (d *desired) add(key string, e *entry) {
	d.services[key] = e
	if e.r.err != nil {
		d.errs[key] = e.r.err
		return
	}
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
	e.r.elements(func(set, k, _ string) {
		d.elems.delString(set, k)
		d.touch(set, k)
	})
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

func frontendOf(vs *model.VirtualService) model.Frontend {
	fe := vs.Frontend()
	fe.VIP = fe.VIP.Unmap()
	return fe
}

// serviceKey is vs.Key() without fmt (it runs for every service on every
// sync).
func serviceKey(vs *model.VirtualService) string {
	return vs.Namespace + "/" + vs.Route + "/" + string(vs.Protocol) + "/" + strconv.Itoa(int(vs.Port))
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
