package nftables

import (
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/model"
)

// TestDesiredIncrementalEqualsFresh drives one desired state through random
// edits (reals changing, services added, removed, replaced in place,
// reordered, duplicated, fighting over a frontend) and checks after every
// step that it wants exactly what a fresh one computes from the same input,
// and that update reported every service whose elements changed.
func TestDesiredIncrementalEqualsFresh(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func(i int) model.VirtualService {
		vs := lbbed.Service("p", fmt.Sprintf("s%03d", i), fmt.Sprintf("10.1.%d.%d", i/200, i%200+1), 80, model.TCP,
			model.Policies[i%3], lbbed.RealV4(1), lbbed.RealV4(2), lbbed.RealV4(3))
		if i%30 == 0 {
			vs.Policy = model.SourceHash // 4,093 slots each: a few
		}
		if i%5 == 0 {
			vs.Protocol = model.UDP
		}
		return vs
	}
	var services []model.VirtualService
	for i := range 60 {
		services = append(services, mk(i))
	}
	next := 60
	d := newDesired()
	d.update(services)
	for step := range 250 {
		s := slices.Clone(services)
		for i := range s {
			s[i].Reals = slices.Clone(s[i].Reals)
		}
		switch op := rng.IntN(9); op {
		case 0, 1, 2: // a real flips health or weight
			vs := &s[rng.IntN(len(s))]
			if len(vs.Reals) > 0 {
				r := &vs.Reals[rng.IntN(len(vs.Reals))]
				if rng.IntN(2) == 0 {
					r.Healthy = !r.Healthy
				} else {
					r.Weight = uint32(rng.IntN(4))
				}
			}
		case 3: // reals added or removed
			vs := &s[rng.IntN(len(s))]
			if rng.IntN(2) == 0 && len(vs.Reals) > 0 {
				vs.Reals = vs.Reals[:len(vs.Reals)-1]
			} else {
				vs.Reals = append(vs.Reals, lbbed.RealV4(4+rng.IntN(3)))
			}
		case 4: // a service added somewhere
			i := rng.IntN(len(s) + 1)
			s = slices.Insert(s, i, mk(next))
			next++
		case 5: // one removed
			if len(s) > 1 {
				i := rng.IntN(len(s))
				s = slices.Delete(s, i, i+1)
			}
		case 6: // replaced in place by a new one
			s[rng.IntN(len(s))] = mk(next)
			next++
		case 7: // two swap places, or the order is shuffled
			if rng.IntN(4) == 0 {
				rng.Shuffle(len(s), func(a, b int) { s[a], s[b] = s[b], s[a] })
			} else {
				a, b := rng.IntN(len(s)), rng.IntN(len(s))
				s[a], s[b] = s[b], s[a]
			}
		case 8: // a duplicate key, or another key on a taken frontend
			src := s[rng.IntN(len(s))]
			dup := src
			dup.Reals = slices.Clone(src.Reals)
			if rng.IntN(2) == 0 {
				dup.Route = "zz" + dup.Route // same frontend, other key
			}
			s = slices.Insert(s, rng.IntN(len(s)+1), dup)
		}
		before := renderings(d)
		changed := d.update(s)
		fresh := newDesired()
		fresh.update(s)
		if !equalElems(d.elems, fresh.elems) {
			t.Fatalf("step %d: incremental elements differ from a fresh render", step)
		}
		if fmt.Sprint(d.errs) != fmt.Sprint(fresh.errs) {
			t.Fatalf("step %d: errs %v, fresh %v", step, d.errs, fresh.errs)
		}
		after := renderings(d)
		if !maps.Equal(after, renderings(fresh)) {
			t.Fatalf("step %d: renderings differ from a fresh one", step)
		}
		// A service whose rendering changed (or that came or went) must be
		// reported: conntrack clean-up and Programmed follow the report.
		reported := map[string]bool{}
		for _, k := range changed {
			reported[k] = true
		}
		for k := range unionKeys2(before, after) {
			if before[k] != after[k] && !reported[k] {
				t.Fatalf("step %d: %s changed (%q → %q) but was not reported", step, k, before[k], after[k])
			}
		}
		services = s
	}
}

func unionKeys2(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// renderings fingerprints what every service renders to.
func renderings(d *desired) map[string]string {
	out := map[string]string{}
	for key, e := range d.services {
		h := fnv.New64a()
		for _, ep := range e.r.slots {
			b, _ := ep.MarshalBinary()
			h.Write(b)
		}
		out[key] = fmt.Sprint(e.r.err, e.r.sel, e.r.feKey, len(e.r.slots), h.Sum64())
	}
	return out
}

func equalElems(a, b elemSet) bool {
	if len(a) != len(b) {
		return false
	}
	for set, m := range a {
		if !maps.Equal(m, b[set]) {
			return false
		}
	}
	return true
}
