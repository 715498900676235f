package apv

import (
	"maps"
	"slices"
)

// Diff returns the command lines that turn the device's owned configuration
// cur into want, without `write memory`. Objects that are gone from want,
// or differ from it, are deleted and created again: ArrayOS documents the
// create forms, not how each one updates an existing object, so a replace is
// the change known to work. Deletion runs first, dependents before what they
// depend on (policy, virtual, group health, member, group, health, real);
// creation runs in the opposite order. Both halves are sorted by name, so the
// same inputs always give the same sequence.
//
// Only names in cur and want are touched, and both hold only owned names
// (ParseConfig drops the rest; Render only makes owned ones).
func Diff(cur, want Config) []string {
	cur, want = normalize(cur), normalize(want)
	delReal := map[string]bool{}
	for n, r := range cur.Reals {
		if w, ok := want.Reals[n]; !ok || w != r {
			delReal[n] = true
		}
	}
	delHealth := map[string]bool{}
	for n, h := range cur.Healths {
		if w, ok := want.Healths[n]; !ok || w != h {
			delHealth[n] = true
		}
	}
	delGroup := map[string]bool{}
	for n, g := range cur.Groups {
		if w, ok := want.Groups[n]; !ok || w.Method != g.Method {
			delGroup[n] = true
		}
	}
	delVirtual := map[string]bool{}
	for n, v := range cur.Virtuals {
		if w, ok := want.Virtuals[n]; !ok || w != v {
			delVirtual[n] = true
		}
	}

	// What stays on the device after the deletions.
	keep := NewConfig()
	var cmds []string

	// 1. policies
	for _, vs := range sortedKeys(cur.Policies) {
		g := cur.Policies[vs]
		if delVirtual[vs] || delGroup[g] || want.Policies[vs] != g {
			cmds = append(cmds, noPolicyLine(vs))
			continue
		}
		keep.Policies[vs] = g
	}
	// 2. virtual services
	for _, n := range sortedKeys(cur.Virtuals) {
		if delVirtual[n] {
			cmds = append(cmds, cur.Virtuals[n].deleteLine())
			continue
		}
		keep.Virtuals[n] = cur.Virtuals[n]
	}
	// 3. group health checks
	for _, n := range sortedKeys(cur.Groups) {
		g := cur.Groups[n]
		if g.Health == "" {
			continue
		}
		if delGroup[n] || delHealth[g.Health] || want.Groups[n].Health != g.Health {
			cmds = append(cmds, noGroupHealthLine(n, g.Health))
		}
	}
	// 4. members
	for _, n := range sortedKeys(cur.Groups) {
		g := cur.Groups[n]
		for _, m := range sortedKeys(g.Members) {
			w, ok := want.Groups[n].Members[m]
			if delGroup[n] || delReal[m] || !ok || w != g.Members[m] {
				cmds = append(cmds, noMemberLine(n, m))
			}
		}
	}
	// 5. groups (kept groups keep their unchanged members and health)
	for _, n := range sortedKeys(cur.Groups) {
		g := cur.Groups[n]
		if delGroup[n] {
			cmds = append(cmds, g.deleteLine())
			continue
		}
		k := Group{Name: n, Method: g.Method, Members: map[string]uint32{}}
		wg := want.Groups[n]
		for m, w := range g.Members {
			if ww, ok := wg.Members[m]; ok && ww == w && !delReal[m] {
				k.Members[m] = w
			}
		}
		if g.Health != "" && !delHealth[g.Health] && wg.Health == g.Health {
			k.Health = g.Health
		}
		keep.Groups[n] = k
	}
	// 6. health checks
	for _, n := range sortedKeys(cur.Healths) {
		if delHealth[n] {
			cmds = append(cmds, cur.Healths[n].deleteLine())
			continue
		}
		keep.Healths[n] = cur.Healths[n]
	}
	// 7. reals
	for _, n := range sortedKeys(cur.Reals) {
		if delReal[n] {
			cmds = append(cmds, cur.Reals[n].deleteLine())
			continue
		}
		keep.Reals[n] = cur.Reals[n]
	}

	// Creation, in dependency order. Reals, groups and virtual services are
	// enabled right after they are complete, the way public scripts do it;
	// a kept object the device lists as disabled is enabled again.
	for _, n := range sortedKeys(want.Reals) {
		if _, ok := keep.Reals[n]; !ok {
			cmds = append(cmds, want.Reals[n].createLine(), enableLine("real", n))
		} else if cur.Disabled[Key{"real", n}] {
			cmds = append(cmds, enableLine("real", n))
		}
	}
	for _, n := range sortedKeys(want.Healths) {
		if _, ok := keep.Healths[n]; !ok {
			cmds = append(cmds, want.Healths[n].createLine())
		}
	}
	for _, n := range sortedKeys(want.Groups) {
		if _, ok := keep.Groups[n]; !ok {
			cmds = append(cmds, want.Groups[n].methodLine())
		}
	}
	for _, n := range sortedKeys(want.Groups) {
		g := want.Groups[n]
		for _, m := range sortedKeys(g.Members) {
			if _, ok := keep.Groups[n].Members[m]; !ok {
				cmds = append(cmds, memberLine(n, m, g.Members[m]))
			}
		}
	}
	for _, n := range sortedKeys(want.Groups) {
		g := want.Groups[n]
		if g.Health != "" && keep.Groups[n].Health != g.Health {
			cmds = append(cmds, groupHealthLine(n, g.Health))
		}
	}
	for _, n := range sortedKeys(want.Groups) {
		if _, ok := keep.Groups[n]; !ok || cur.Disabled[Key{"group", n}] {
			cmds = append(cmds, enableLine("group", n))
		}
	}
	for _, n := range sortedKeys(want.Virtuals) {
		if _, ok := keep.Virtuals[n]; !ok {
			cmds = append(cmds, want.Virtuals[n].createLine(), enableLine("virtual", n))
		} else if cur.Disabled[Key{"virtual", n}] {
			cmds = append(cmds, enableLine("virtual", n))
		}
	}
	for _, vs := range sortedKeys(want.Policies) {
		if _, ok := keep.Policies[vs]; !ok {
			cmds = append(cmds, policyLine(vs, want.Policies[vs]))
		}
	}
	return cmds
}

// normalize makes nil maps empty so lookups need no checks.
func normalize(c Config) Config {
	if c.Reals == nil {
		c.Reals = map[string]Real{}
	}
	if c.Healths == nil {
		c.Healths = map[string]Health{}
	}
	if c.Groups == nil {
		c.Groups = map[string]Group{}
	}
	if c.Virtuals == nil {
		c.Virtuals = map[string]Virtual{}
	}
	if c.Policies == nil {
		c.Policies = map[string]string{}
	}
	if c.Disabled == nil {
		c.Disabled = map[Key]bool{}
	}
	return c
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
