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
	r := replaced(cur, want)
	cmds, keep := deletions(cur, want, r)
	return append(cmds, creations(cur, want, keep)...)
}

// replacement names the objects of cur that go: gone from want or
// different there.
type replacement struct {
	reals, healths, groups, virtuals map[string]bool
}

func replaced(cur, want Config) replacement {
	return replacement{
		reals:   changedKeys(cur.Reals, want.Reals, func(a, b Real) bool { return a == b }),
		healths: changedKeys(cur.Healths, want.Healths, func(a, b Health) bool { return a == b }),
		// A group's members and health check change in place; only its
		// method makes it a new group.
		groups:   changedKeys(cur.Groups, want.Groups, func(a, b Group) bool { return a.Method == b.Method }),
		virtuals: changedKeys(cur.Virtuals, want.Virtuals, func(a, b Virtual) bool { return a == b }),
	}
}

// changedKeys returns the keys of cur that want lacks or holds different.
func changedKeys[V any](cur, want map[string]V, same func(a, b V) bool) map[string]bool {
	out := map[string]bool{}
	for n, c := range cur {
		if w, ok := want[n]; !ok || !same(c, w) {
			out[n] = true
		}
	}
	return out
}

// deletions returns the lines that remove what goes, dependents first, and
// what stays on the device after them.
func deletions(cur, want Config, r replacement) (cmds []string, keep Config) {
	keep = NewConfig()
	// 1. policies
	for _, vs := range sortedKeys(cur.Policies) {
		g := cur.Policies[vs]
		if r.virtuals[vs] || r.groups[g] || want.Policies[vs] != g {
			cmds = append(cmds, noPolicyLine(vs))
			continue
		}
		keep.Policies[vs] = g
	}
	// 2. virtual services
	for _, n := range sortedKeys(cur.Virtuals) {
		if r.virtuals[n] {
			cmds = append(cmds, cur.Virtuals[n].deleteLine())
			continue
		}
		keep.Virtuals[n] = cur.Virtuals[n]
	}
	// 3. group health checks
	for _, n := range sortedKeys(cur.Groups) {
		g := cur.Groups[n]
		if g.Health != "" && (r.groups[n] || r.healths[g.Health] || want.Groups[n].Health != g.Health) {
			cmds = append(cmds, noGroupHealthLine(n, g.Health))
		}
	}
	// 4. members
	for _, n := range sortedKeys(cur.Groups) {
		g := cur.Groups[n]
		for _, m := range sortedKeys(g.Members) {
			w, ok := want.Groups[n].Members[m]
			if r.groups[n] || r.reals[m] || !ok || w != g.Members[m] {
				cmds = append(cmds, noMemberLine(n, m))
			}
		}
	}
	// 5. groups (kept groups keep their unchanged members and health)
	for _, n := range sortedKeys(cur.Groups) {
		g := cur.Groups[n]
		if r.groups[n] {
			cmds = append(cmds, g.deleteLine())
			continue
		}
		keep.Groups[n] = keptGroup(n, g, want.Groups[n], r)
	}
	// 6. health checks
	for _, n := range sortedKeys(cur.Healths) {
		if r.healths[n] {
			cmds = append(cmds, cur.Healths[n].deleteLine())
			continue
		}
		keep.Healths[n] = cur.Healths[n]
	}
	// 7. reals
	for _, n := range sortedKeys(cur.Reals) {
		if r.reals[n] {
			cmds = append(cmds, cur.Reals[n].deleteLine())
			continue
		}
		keep.Reals[n] = cur.Reals[n]
	}
	return cmds, keep
}

// keptGroup is what remains of group g (named n) after the deletions, given the
// wanted group w: the members and health check that stay as they are.
func keptGroup(n string, g, w Group, r replacement) Group {
	k := Group{Name: n, Method: g.Method, Members: map[string]uint32{}}
	for m, weight := range g.Members {
		if ww, ok := w.Members[m]; ok && ww == weight && !r.reals[m] {
			k.Members[m] = weight
		}
	}
	if g.Health != "" && !r.healths[g.Health] && w.Health == g.Health {
		k.Health = g.Health
	}
	return k
}

// creations returns the lines that create what want has and keep lacks, in
// dependency order. Reals, groups and virtual services are enabled right
// after they are complete, the way public scripts do it; a kept object the
// device lists as disabled is enabled again.
func creations(cur, want, keep Config) []string {
	var cmds []string
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
