package apv

import (
	"bufio"
	"net/netip"
	"strconv"
	"strings"
)

// ParseConfig reads the owned SLB objects out of configuration text, the
// output of `show running` (or of the `show slb ...` commands, which print
// the same lines): `slb real tcp "rs1" 172.16.0.9 80 1000 tcp 3 3`,
// `slb group member "gm1" "rs1" 1 0`, `slb policy default "vs1" "gm1"`.
// Names may be quoted or not and fields separated by any run of blanks.
// Lines about objects without OwnerPrefix, and lines it does not know, are
// skipped. An owned line it cannot read completely still records the object
// with what it could read, and is counted in unreadable: the object then
// differs from the desired one, so it is replaced (or deleted when it is no
// longer wanted) rather than left behind, and the read-back after the write
// shows whether the device prints it back differently (see Appliance).
//
// `slb real|group|virtual enable <name>` lines are skipped; `... disable
// <name>` lines mark the object disabled (Config.Disabled).
func ParseConfig(text string) (c Config, unreadable int) {
	c = NewConfig()
	members := map[string]map[string]uint32{}
	groupHealth := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		f := tokenize(strings.TrimSpace(sc.Text()))
		if len(f) < 3 || f[0] != "slb" {
			continue
		}
		if (f[1] == "real" || f[1] == "virtual" || f[1] == "group") && (f[2] == "enable" || f[2] == "disable") {
			if len(f) >= 4 && owned(f[3]) && f[2] == "disable" {
				c.Disabled[Key{f[1], f[3]}] = true
			}
			continue
		}
		ok := true
		switch {
		case f[1] == "real" && len(f) >= 4:
			if !owned(f[3]) {
				continue
			}
			r := Real{Proto: f[2], Name: f[3]}
			ok = len(f) >= 6 && parseAddr(f[4], &r.IP) && parsePort(f[5], &r.Port)
			c.Reals[r.Name] = r
		case f[1] == "virtual" && len(f) >= 4:
			if !owned(f[3]) {
				continue
			}
			v := Virtual{Proto: f[2], Name: f[3]}
			ok = len(f) >= 6 && parseAddr(f[4], &v.VIP) && parsePort(f[5], &v.Port)
			c.Virtuals[v.Name] = v
		case f[1] == "group" && f[2] == "method" && len(f) >= 4:
			if !owned(f[3]) {
				continue
			}
			g := c.Groups[f[3]]
			g.Name = f[3]
			if len(f) >= 5 {
				g.Method = f[4]
			} else {
				g.Method = "rr" // the documented default
			}
			c.Groups[g.Name] = g
		case f[1] == "group" && f[2] == "member" && len(f) >= 4:
			if !owned(f[3]) {
				continue
			}
			w := uint64(1)
			ok = len(f) >= 5
			if ok && len(f) >= 6 {
				var err error
				w, err = strconv.ParseUint(f[5], 10, 32)
				ok = err == nil
			}
			if len(f) >= 5 {
				if members[f[3]] == nil {
					members[f[3]] = map[string]uint32{}
				}
				members[f[3]][f[4]] = uint32(w)
			}
		case f[1] == "group" && f[2] == "health" && len(f) >= 4:
			if !owned(f[3]) {
				continue
			}
			ok = len(f) >= 5
			if ok {
				groupHealth[f[3]] = f[4]
			}
		case f[1] == "health" && len(f) >= 3:
			if !owned(f[2]) {
				continue
			}
			h, good := parseHealth(f)
			ok = good
			if prev, seen := c.Healths[h.Name]; seen && !good {
				// A second line about a check already read (a device that
				// splits a check over several lines) must not blank it.
				h = prev
			}
			c.Healths[h.Name] = h
		case f[1] == "policy" && f[2] == "default" && len(f) >= 4:
			if !owned(f[3]) {
				continue
			}
			ok = len(f) >= 5
			if ok {
				c.Policies[f[3]] = f[4]
			}
		default:
			continue
		}
		if !ok {
			unreadable++
		}
	}
	// Members and health attachments of a group whose method line was not
	// seen still belong to a group on the device: keep them so Diff removes
	// them before anything else uses the name.
	for g, ms := range members {
		gr := c.Groups[g]
		if gr.Name == "" {
			gr = Group{Name: g, Method: "rr"}
		}
		gr.Members = ms
		c.Groups[g] = gr
	}
	for g, h := range groupHealth {
		gr := c.Groups[g]
		if gr.Name == "" {
			gr = Group{Name: g, Method: "rr"}
		}
		gr.Health = h
		c.Groups[g] = gr
	}
	for n, g := range c.Groups {
		if g.Members == nil {
			g.Members = map[string]uint32{}
			c.Groups[n] = g
		}
	}
	return c, unreadable
}

// parseHealth reads `slb health <name> <type> <interval> <timeout> <rise>
// <fall> [<method> "<path>" "<codes>"]`.
func parseHealth(f []string) (Health, bool) {
	h := Health{Name: f[2]}
	if len(f) >= 4 {
		h.Type = f[3]
	}
	if len(f) < 8 {
		return h, false
	}
	var err error
	for i, p := range []*int{&h.Interval, &h.Timeout, &h.Rise, &h.Fall} {
		if *p, err = strconv.Atoi(f[4+i]); err != nil {
			return h, false
		}
	}
	if h.Type == "http" {
		if len(f) < 11 {
			return h, false
		}
		h.Path, h.Codes = f[9], f[10]
	}
	return h, true
}

func parseAddr(s string, out *netip.Addr) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	*out = a.Unmap()
	return true
}

func parsePort(s string, out *uint16) bool {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return false
	}
	*out = uint16(p)
	return true
}
