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
	r := configReader{c: NewConfig(), members: map[string]map[string]uint32{}, groupHealth: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		r.line(tokenize(strings.TrimSpace(sc.Text())))
	}
	return r.finish(), r.unreadable
}

// configReader holds what ParseConfig has read so far. Group members and
// health attachments are collected apart, since their lines may come
// before (or without) the group's method line.
type configReader struct {
	c           Config
	members     map[string]map[string]uint32
	groupHealth map[string]string
	unreadable  int
}

// line reads one tokenized line.
func (r *configReader) line(f []string) {
	if len(f) < 3 || f[0] != "slb" {
		return
	}
	if (f[1] == "real" || f[1] == "virtual" || f[1] == "group") && (f[2] == "enable" || f[2] == "disable") {
		if len(f) >= 4 && owned(f[3]) && f[2] == "disable" {
			r.c.Disabled[Key{f[1], f[3]}] = true
		}
		return
	}
	name, read := r.readerFor(f)
	if read == nil || !owned(name) {
		return
	}
	if !read(f) {
		r.unreadable++
	}
}

// readerFor picks the reader of a line and the name of the object it is
// about; nil for a line it does not know.
func (r *configReader) readerFor(f []string) (name string, read func([]string) bool) {
	switch {
	case f[1] == "health":
		return f[2], r.health
	case len(f) < 4:
		return "", nil
	case f[1] == "real":
		return f[3], r.real
	case f[1] == "virtual":
		return f[3], r.virtual
	case f[1] == "group" && f[2] == "method":
		return f[3], r.groupMethod
	case f[1] == "group" && f[2] == "member":
		return f[3], r.groupMember
	case f[1] == "group" && f[2] == "health":
		return f[3], r.groupHealthLine
	case f[1] == "policy" && f[2] == "default":
		return f[3], r.policy
	}
	return "", nil
}

// Each reader records the object with what it could read, and says whether
// it read the whole line.

func (r *configReader) real(f []string) bool {
	rs := Real{Proto: f[2], Name: f[3]}
	ok := len(f) >= 6 && parseAddr(f[4], &rs.IP) && parsePort(f[5], &rs.Port)
	r.c.Reals[rs.Name] = rs
	return ok
}

func (r *configReader) virtual(f []string) bool {
	v := Virtual{Proto: f[2], Name: f[3]}
	ok := len(f) >= 6 && parseAddr(f[4], &v.VIP) && parsePort(f[5], &v.Port)
	r.c.Virtuals[v.Name] = v
	return ok
}

func (r *configReader) groupMethod(f []string) bool {
	g := r.c.Groups[f[3]]
	g.Name = f[3]
	if len(f) >= 5 {
		g.Method = f[4]
	} else {
		g.Method = "rr" // the documented default
	}
	r.c.Groups[g.Name] = g
	return true
}

func (r *configReader) groupMember(f []string) bool {
	if len(f) < 5 {
		return false
	}
	w, ok := uint64(1), true
	if len(f) >= 6 {
		var err error
		w, err = strconv.ParseUint(f[5], 10, 32)
		ok = err == nil
	}
	if r.members[f[3]] == nil {
		r.members[f[3]] = map[string]uint32{}
	}
	r.members[f[3]][f[4]] = uint32(w)
	return ok
}

func (r *configReader) groupHealthLine(f []string) bool {
	if len(f) < 5 {
		return false
	}
	r.groupHealth[f[3]] = f[4]
	return true
}

func (r *configReader) health(f []string) bool {
	h, ok := parseHealth(f)
	if prev, seen := r.c.Healths[h.Name]; seen && !ok {
		// A second line about a check already read (a device that splits
		// a check over several lines) must not blank it.
		h = prev
	}
	r.c.Healths[h.Name] = h
	return ok
}

func (r *configReader) policy(f []string) bool {
	if len(f) < 5 {
		return false
	}
	r.c.Policies[f[3]] = f[4]
	return true
}

// finish attaches members and health checks to their groups. Those of a
// group whose method line was not seen still belong to a group on the
// device: they are kept so Diff removes them before anything else uses the
// name.
func (r *configReader) finish() Config {
	c := r.c
	group := func(n string) Group {
		if g := c.Groups[n]; g.Name != "" {
			return g
		}
		return Group{Name: n, Method: "rr"}
	}
	for n, ms := range r.members {
		g := group(n)
		g.Members = ms
		c.Groups[n] = g
	}
	for n, h := range r.groupHealth {
		g := group(n)
		g.Health = h
		c.Groups[n] = g
	}
	for n, g := range c.Groups {
		if g.Members == nil {
			g.Members = map[string]uint32{}
			c.Groups[n] = g
		}
	}
	return c
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
