package apv

import (
	"maps"
	"slices"
	"strings"
)

// A device may print an object back differently from how it was sent:
// other spacing or quoting (which ParseConfig reads through), defaults
// filled in, a health check split over several lines. Rewriting such an
// object would not make it match; doing it on every sync would delete and
// re-create it and run `write memory` every syncInterval, for ever. So when
// an object still differs right after a successful write and read-back, it
// is marked: the agent accepts the device's form for as long as neither the
// desired object nor the device's lines for it change, and reports it
// (status normalizesDifferently, metric, event). Either side changing
// clears the mark and costs one more write, never a loop.

// mark remembers what was wanted and what the device printed when an
// object was found to read back differently.
type mark struct {
	want, device string
}

// objectKeys lists every object of c.
func objectKeys(c Config) []Key {
	var out []Key
	for n := range c.Reals {
		out = append(out, Key{"real", n})
	}
	for n := range c.Healths {
		out = append(out, Key{"health", n})
	}
	for n := range c.Groups {
		out = append(out, Key{"group", n})
	}
	for n := range c.Virtuals {
		out = append(out, Key{"virtual", n})
	}
	for n := range c.Policies {
		out = append(out, Key{"policy", n})
	}
	return out
}

// objectLines renders the lines that make up one object of c ("" when c
// lacks it).
func objectLines(c Config, k Key) string {
	switch k.Kind {
	case "real":
		if r, ok := c.Reals[k.Name]; ok {
			return r.createLine()
		}
	case "health":
		if h, ok := c.Healths[k.Name]; ok {
			return h.createLine()
		}
	case "group":
		if g, ok := c.Groups[k.Name]; ok {
			lines := []string{g.methodLine()}
			for _, m := range sortedKeys(g.Members) {
				lines = append(lines, memberLine(g.Name, m, g.Members[m]))
			}
			if g.Health != "" {
				lines = append(lines, groupHealthLine(g.Name, g.Health))
			}
			return strings.Join(lines, "\n")
		}
	case "virtual":
		if v, ok := c.Virtuals[k.Name]; ok {
			return v.createLine()
		}
	case "policy":
		if g, ok := c.Policies[k.Name]; ok {
			return policyLine(k.Name, g)
		}
	}
	return ""
}

// differing lists the objects of cur and want that differ (present in one
// only, other fields, or kept but disabled), sorted.
func differing(cur, want Config) []Key {
	cur, want = normalize(cur), normalize(want)
	seen := map[Key]bool{}
	for _, k := range append(objectKeys(cur), objectKeys(want)...) {
		if seen[k] {
			continue
		}
		seen[k] = true
	}
	var out []Key
	for k := range seen {
		if objectLines(cur, k) != objectLines(want, k) || (cur.Disabled[k] && objectLines(want, k) != "") {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// deviceLines indexes configuration text by owned name: every trimmed line
// that holds the name as a field. It is what a mark compares to notice that
// the device's form of an object changed.
func deviceLines(raw string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(raw, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		for _, f := range tokenize(line) {
			if owned(f) {
				if l := out[f]; len(l) == 0 || l[len(l)-1] != line {
					out[f] = append(l, line)
				}
			}
		}
	}
	for n := range out {
		slices.Sort(out[n])
	}
	return out
}

// adopt replaces object k of cur with want's (or removes it when want has
// none), so Diff leaves it alone.
func adopt(cur *Config, want Config, k Key) {
	delete(cur.Disabled, k)
	switch k.Kind {
	case "real":
		if r, ok := want.Reals[k.Name]; ok {
			cur.Reals[k.Name] = r
		} else {
			delete(cur.Reals, k.Name)
		}
	case "health":
		if h, ok := want.Healths[k.Name]; ok {
			cur.Healths[k.Name] = h
		} else {
			delete(cur.Healths, k.Name)
		}
	case "group":
		if g, ok := want.Groups[k.Name]; ok {
			g.Members = maps.Clone(g.Members)
			cur.Groups[k.Name] = g
		} else {
			delete(cur.Groups, k.Name)
		}
	case "virtual":
		if v, ok := want.Virtuals[k.Name]; ok {
			cur.Virtuals[k.Name] = v
		} else {
			delete(cur.Virtuals, k.Name)
		}
	case "policy":
		if g, ok := want.Policies[k.Name]; ok {
			cur.Policies[k.Name] = g
		} else {
			delete(cur.Policies, k.Name)
		}
	}
}

// applyMarks adopts the device's form of every marked object whose desired
// lines and device lines are both unchanged, and drops the other marks. It
// returns cur (a copy when anything is adopted) and the marks that hold.
func applyMarks(marks map[Key]mark, raw string, cur, want Config) (Config, map[Key]mark) {
	if len(marks) == 0 {
		return cur, marks
	}
	dev := deviceLines(raw)
	kept := map[Key]mark{}
	out := cloneConfig(normalize(cur))
	for k, m := range marks {
		if objectLines(want, k) != m.want || strings.Join(dev[k.Name], "\n") != m.device {
			continue
		}
		kept[k] = m
		adopt(&out, want, k)
	}
	return out, kept
}

// markDiffering returns marks for the objects that still differ after a
// write.
func markDiffering(raw string, after, want Config) map[Key]mark {
	diff := differing(after, want)
	if len(diff) == 0 {
		return nil
	}
	dev := deviceLines(raw)
	out := make(map[Key]mark, len(diff))
	for _, k := range diff {
		out[k] = mark{want: objectLines(want, k), device: strings.Join(dev[k.Name], "\n")}
	}
	return out
}

func cloneConfig(c Config) Config {
	out := Config{
		Reals:    maps.Clone(c.Reals),
		Healths:  maps.Clone(c.Healths),
		Groups:   make(map[string]Group, len(c.Groups)),
		Virtuals: maps.Clone(c.Virtuals),
		Policies: maps.Clone(c.Policies),
		Disabled: maps.Clone(c.Disabled),
	}
	for n, g := range c.Groups {
		g.Members = maps.Clone(g.Members)
		out.Groups[n] = g
	}
	return out
}
