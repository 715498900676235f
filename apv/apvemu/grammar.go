package apvemu

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

type real struct {
	proto, ip string
	port      int
	rest      []string // max_conn, health type, ... as given
}

type health struct {
	typ  string
	args []string // interval timeout up down [method path codes]
}

type member struct {
	real   string
	weight int
}

type group struct {
	method  []string
	members []member
	health  string
}

type virtual struct {
	proto, vip string
	port       int
	rest       []string
}

// config is the device configuration the emulator keeps.
type config struct {
	reals    map[string]real
	healths  map[string]health
	groups   map[string]*group
	virtuals map[string]virtual
	policies map[string]string
	sslHosts map[string]string
	// enabled holds "<kind> <name>" for the reals, groups and virtual
	// services enabled since they were created. No public sample shows how
	// `show running` prints the enable state, so lines() leaves it out.
	enabled map[string]bool
}

func newConfig() *config {
	return &config{
		reals: map[string]real{}, healths: map[string]health{}, groups: map[string]*group{},
		virtuals: map[string]virtual{}, policies: map[string]string{}, sslHosts: map[string]string{},
		enabled: map[string]bool{},
	}
}

func (c *config) clone() *config {
	n := newConfig()
	maps.Copy(n.reals, c.reals)
	maps.Copy(n.healths, c.healths)
	maps.Copy(n.virtuals, c.virtuals)
	maps.Copy(n.policies, c.policies)
	maps.Copy(n.sslHosts, c.sslHosts)
	maps.Copy(n.enabled, c.enabled)
	for k, g := range c.groups {
		cp := *g
		cp.method = slices.Clone(g.method)
		cp.members = slices.Clone(g.members)
		n.groups[k] = &cp
	}
	return n
}

// lines prints the configuration the way `show running` does: one
// configuration line per object, names in double quotes.
func (c *config) lines() []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(c.reals)) {
		r := c.reals[n]
		out = append(out, strings.TrimSpace(fmt.Sprintf("slb real %s %q %s %d %s", r.proto, n, r.ip, r.port, strings.Join(r.rest, " "))))
	}
	for _, n := range slices.Sorted(maps.Keys(c.healths)) {
		h := c.healths[n]
		out = append(out, fmt.Sprintf("slb health %q %s %s", n, h.typ, quoteArgs(h.args)))
	}
	for _, n := range slices.Sorted(maps.Keys(c.groups)) {
		out = append(out, strings.TrimSpace(fmt.Sprintf("slb group method %q %s", n, strings.Join(c.groups[n].method, " "))))
	}
	for _, n := range slices.Sorted(maps.Keys(c.groups)) {
		for _, m := range c.groups[n].members {
			// The second number is printed by real devices after the
			// weight (netkiller's `show slb group member` example).
			out = append(out, fmt.Sprintf("slb group member %q %q %d 0", n, m.real, m.weight))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(c.groups)) {
		if h := c.groups[n].health; h != "" {
			out = append(out, fmt.Sprintf("slb group health %q %q", n, h))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(c.virtuals)) {
		v := c.virtuals[n]
		out = append(out, strings.TrimSpace(fmt.Sprintf("slb virtual %s %q %s %d %s", v.proto, n, v.vip, v.port, strings.Join(v.rest, " "))))
	}
	for _, n := range slices.Sorted(maps.Keys(c.policies)) {
		out = append(out, fmt.Sprintf("slb policy default %q %q", n, c.policies[n]))
	}
	for _, n := range slices.Sorted(maps.Keys(c.sslHosts)) {
		out = append(out, fmt.Sprintf("ssl host virtual %q %q", n, c.sslHosts[n]))
	}
	return out
}

func quoteArgs(a []string) string {
	out := make([]string, len(a))
	for i, s := range a {
		if _, err := strconv.Atoi(s); err == nil || s == "GET" || s == "HEAD" {
			out[i] = s
		} else {
			out[i] = strconv.Quote(s)
		}
	}
	return strings.Join(out, " ")
}

// tokenize splits a CLI line; double quotes group a field. ok is false for
// unbalanced quotes. It deliberately does not reuse the driver's splitter
// (apv/cli.go): the emulator stands in for the device, and sharing the
// driver's parsing would hide a quoting bug on both sides at once.
func tokenize(line string) (f []string, ok bool) {
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range line {
		switch {
		case r == '"':
			inQ, have = !inQ, true
		case (r == ' ' || r == '\t') && !inQ:
			if have {
				f = append(f, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		f = append(f, cur.String())
	}
	return f, !inQ
}

func errf(format string, a ...any) string { return "Error: " + fmt.Sprintf(format, a...) }

var protos = map[string]bool{"tcp": true, "udp": true, "http": true, "https": true, "tcps": true, "ftp": true, "dns": true, "ip": true}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '"' {
			return false
		}
	}
	return true
}

// exec runs one CLI line with e.mu held and returns its output.
func (e *Emulator) exec(line string) string {
	f, ok := tokenize(line)
	if !ok {
		return errf("unbalanced quotes")
	}
	if len(f) == 0 {
		return ""
	}
	c := e.running
	switch {
	case f[0] == "write" && len(f) == 2 && f[1] == "memory":
		e.saved = c.clone()
		return ""
	case f[0] == "show":
		return e.show(f[1:])
	case f[0] == "no" && len(f) > 1 && f[1] == "slb":
		return e.noSLB(f[2:])
	case f[0] == "slb":
		return e.slb(f[1:])
	case f[0] == "ssl" && len(f) == 5 && f[1] == "host" && f[2] == "virtual":
		if _, ok := c.virtuals[f[4]]; !ok {
			return errf("virtual service %q does not exist", f[4])
		}
		c.sslHosts[f[3]] = f[4]
		return ""
	}
	return errf("unknown command %q", strings.Join(f, " "))
}

func (e *Emulator) slb(f []string) string {
	c := e.running
	if len(f) < 2 {
		return errf("incomplete command")
	}
	switch f[0] {
	case "real", "virtual", "group":
		if len(f) == 3 && (f[1] == "enable" || f[1] == "disable") {
			return e.enable(f[0], f[2], f[1] == "enable")
		}
	}
	switch f[0] {
	case "real":
		if len(f) < 5 || !protos[f[1]] || !validName(f[2]) {
			return errf("usage: slb real <type> <name> <ip> <port> ...")
		}
		ip, err := netip.ParseAddr(f[3])
		port, perr := strconv.Atoi(f[4])
		if err != nil || perr != nil || port < 1 || port > 65535 {
			return errf("invalid address or port")
		}
		if _, ok := c.reals[f[2]]; ok {
			return errf("real service %q already exists", f[2])
		}
		c.reals[f[2]] = real{proto: f[1], ip: ip.String(), port: port, rest: slices.Clone(f[5:])}
		return ""
	case "virtual":
		if len(f) < 5 || !protos[f[1]] || !validName(f[2]) {
			return errf("usage: slb virtual <type> <name> <vip> <port> ...")
		}
		ip, err := netip.ParseAddr(f[3])
		port, perr := strconv.Atoi(f[4])
		if err != nil || perr != nil || port < 1 || port > 65535 {
			return errf("invalid address or port")
		}
		if _, ok := c.virtuals[f[2]]; ok {
			return errf("virtual service %q already exists", f[2])
		}
		for n, v := range c.virtuals {
			if v.vip == ip.String() && v.port == port && v.proto == f[1] {
				return errf("%s %s:%d is used by virtual service %q", f[1], ip, port, n)
			}
		}
		c.virtuals[f[2]] = virtual{proto: f[1], vip: ip.String(), port: port, rest: slices.Clone(f[5:])}
		return ""
	case "health":
		if len(f) < 7 || !validName(f[1]) {
			return errf("usage: slb health <name> <type> <interval> <timeout> <up> <down> ...")
		}
		for _, n := range f[3:7] {
			if v, err := strconv.Atoi(n); err != nil || v < 1 {
				return errf("invalid number %q", n)
			}
		}
		switch {
		case f[2] == "http" && len(f) != 10:
			return errf("http health needs <method> <path> <codes>")
		case (f[2] == "tcp" || f[2] == "icmp") && len(f) != 7:
			return errf("%s health takes <interval> <timeout> <up> <down>", f[2])
		case f[2] != "http" && f[2] != "tcp" && f[2] != "icmp":
			return errf("unknown health check type %q", f[2])
		}
		if _, ok := c.healths[f[1]]; ok {
			return errf("health check %q already exists", f[1])
		}
		c.healths[f[1]] = health{typ: f[2], args: slices.Clone(f[3:])}
		return ""
	case "group":
		return e.slbGroup(f[1:])
	case "policy":
		if len(f) != 4 || f[1] != "default" {
			return errf("usage: slb policy default <virtual> <group>")
		}
		if _, ok := c.virtuals[f[2]]; !ok {
			return errf("virtual service %q does not exist", f[2])
		}
		if _, ok := c.groups[f[3]]; !ok {
			return errf("group %q does not exist", f[3])
		}
		if _, ok := c.policies[f[2]]; ok {
			return errf("virtual service %q already has a default policy", f[2])
		}
		c.policies[f[2]] = f[3]
		return ""
	}
	return errf("unknown command slb %s", f[0])
}

func (e *Emulator) slbGroup(f []string) string {
	c := e.running
	if len(f) < 2 {
		return errf("incomplete command")
	}
	switch f[0] {
	case "method":
		if !validName(f[1]) {
			return errf("invalid group name")
		}
		method := []string{"rr"}
		if len(f) > 2 {
			method = slices.Clone(f[2:])
		}
		switch method[0] {
		case "rr", "lc", "sr", "pi", "hi", "chi", "hc", "ic", "pc", "ph", "pu":
		default:
			return errf("unknown method %q", method[0])
		}
		if g, ok := c.groups[f[1]]; ok {
			g.method = method
			return ""
		}
		c.groups[f[1]] = &group{method: method}
		return ""
	case "member":
		if len(f) < 3 || len(f) > 4 {
			return errf("usage: slb group member <group> <real> [weight]")
		}
		g, ok := c.groups[f[1]]
		if !ok {
			return errf("group %q does not exist", f[1])
		}
		if _, ok := c.reals[f[2]]; !ok {
			return errf("real service %q does not exist", f[2])
		}
		w := 1
		if len(f) == 4 {
			var err error
			if w, err = strconv.Atoi(f[3]); err != nil || w < 0 || w > 100 {
				return errf("invalid weight %q", f[3])
			}
		}
		for _, m := range g.members {
			if m.real == f[2] {
				return errf("real service %q is already a member of %q", f[2], f[1])
			}
		}
		g.members = append(g.members, member{real: f[2], weight: w})
		return ""
	case "health":
		if len(f) != 3 {
			return errf("usage: slb group health <group> <health>")
		}
		g, ok := c.groups[f[1]]
		if !ok {
			return errf("group %q does not exist", f[1])
		}
		if _, ok := c.healths[f[2]]; !ok {
			return errf("health check %q does not exist", f[2])
		}
		if g.health != "" {
			return errf("group %q already has health check %q", f[1], g.health)
		}
		g.health = f[2]
		return ""
	}
	return errf("unknown command slb group %s", f[0])
}

// enable runs `slb <kind> enable|disable <name>` (jp05451/array-script
// enables every real, group and virtual service it creates).
func (e *Emulator) enable(kind, name string, on bool) string {
	c := e.running
	if e.refuseEnable {
		return errf("unknown command slb %s enable", kind)
	}
	exists := false
	switch kind {
	case "real":
		_, exists = c.reals[name]
	case "virtual":
		_, exists = c.virtuals[name]
	case "group":
		_, exists = c.groups[name]
	}
	if !exists {
		return errf("%s %q does not exist", kind, name)
	}
	if on {
		c.enabled[kind+" "+name] = true
	} else {
		delete(c.enabled, kind+" "+name)
	}
	return ""
}

// noSLB deletes; it refuses to delete what something still references.
func (e *Emulator) noSLB(f []string) string {
	c := e.running
	if len(f) < 2 {
		return errf("incomplete command")
	}
	switch {
	case f[0] == "real" && len(f) == 3:
		r, ok := c.reals[f[2]]
		if !ok || r.proto != f[1] {
			return errf("%s real service %q does not exist", f[1], f[2])
		}
		for gn, g := range c.groups {
			for _, m := range g.members {
				if m.real == f[2] {
					return errf("real service %q is a member of group %q", f[2], gn)
				}
			}
		}
		delete(c.reals, f[2])
		delete(c.enabled, "real "+f[2])
	case f[0] == "virtual" && len(f) == 3:
		v, ok := c.virtuals[f[2]]
		if !ok || v.proto != f[1] {
			return errf("%s virtual service %q does not exist", f[1], f[2])
		}
		if _, ok := c.policies[f[2]]; ok {
			return errf("virtual service %q has a policy", f[2])
		}
		for vh, vs := range c.sslHosts {
			if vs == f[2] {
				return errf("virtual service %q is used by SSL host %q", f[2], vh)
			}
		}
		delete(c.virtuals, f[2])
		delete(c.enabled, "virtual "+f[2])
	case f[0] == "health" && len(f) == 2:
		if _, ok := c.healths[f[1]]; !ok {
			return errf("health check %q does not exist", f[1])
		}
		for gn, g := range c.groups {
			if g.health == f[1] {
				return errf("health check %q is used by group %q", f[1], gn)
			}
		}
		delete(c.healths, f[1])
	case f[0] == "group" && f[1] == "method" && len(f) == 3:
		g, ok := c.groups[f[2]]
		if !ok {
			return errf("group %q does not exist", f[2])
		}
		if len(g.members) > 0 || g.health != "" {
			return errf("group %q still has members or a health check", f[2])
		}
		for vs, gn := range c.policies {
			if gn == f[2] {
				return errf("group %q is the default group of %q", f[2], vs)
			}
		}
		delete(c.groups, f[2])
		delete(c.enabled, "group "+f[2])
	case f[0] == "group" && f[1] == "member" && len(f) == 4:
		g, ok := c.groups[f[2]]
		if !ok {
			return errf("group %q does not exist", f[2])
		}
		i := slices.IndexFunc(g.members, func(m member) bool { return m.real == f[3] })
		if i < 0 {
			return errf("real service %q is not a member of %q", f[3], f[2])
		}
		g.members = slices.Delete(g.members, i, i+1)
	case f[0] == "group" && f[1] == "health" && len(f) == 4:
		g, ok := c.groups[f[2]]
		if !ok || g.health != f[3] {
			return errf("group %q has no health check %q", f[2], f[3])
		}
		g.health = ""
	case f[0] == "policy" && f[1] == "default" && len(f) == 3:
		if _, ok := c.policies[f[2]]; !ok {
			return errf("virtual service %q has no default policy", f[2])
		}
		delete(c.policies, f[2])
	default:
		return errf("unknown command no slb %s", strings.Join(f, " "))
	}
	return ""
}

// show answers the read commands.
func (e *Emulator) show(f []string) string {
	c := e.running
	arg := strings.Join(f, " ")
	switch {
	case arg == "running" || arg == "running-config":
		return strings.Join(e.printed(c.lines()), "\n")
	case arg == "version":
		return "ArrayOS Rel.APV.emulated\n        Host name : apvemu\n"
	case len(f) >= 2 && f[0] == "slb" && (f[1] == "real" || f[1] == "virtual" || f[1] == "group" || f[1] == "policy"):
		prefix := "slb " + f[1]
		if f[1] == "real" || f[1] == "virtual" {
			if len(f) > 2 && f[2] != "all" {
				prefix += " " + f[2]
			}
		}
		if f[1] == "group" && len(f) > 2 {
			prefix += " " + f[2]
			if len(f) > 3 {
				prefix += " " + strconv.Quote(f[3])
			}
		}
		var out []string
		for _, l := range c.lines() {
			if strings.HasPrefix(l, prefix+" ") {
				out = append(out, l)
			}
		}
		return strings.Join(e.printed(out), "\n")
	case arg == "ha config":
		return e.showHAConfig()
	case arg == "ha status":
		return e.showHAStatus()
	case arg == "ha status domain":
		return e.showHADomain()
	case arg == "ip address" || arg == "ip addr":
		// jp05451/array-script's resolvePortNames reads this form.
		return fmt.Sprintf("ip address %q %s 255.255.255.0\nip address %q 198.51.100.10 255.255.255.0\n", "port1", unitMIP, "port2")
	case arg == "interface":
		return e.showInterfaces()
	case arg == "statistics cpu":
		// The line jp05451/array-script's system monitor reads.
		return fmt.Sprintf("CPU Utilization %.0f %%\n", e.cpu*100)
	case arg == "memory":
		// The zone table of netkiller's notes; it holds no usage ratio,
		// which is why the agent does not read memory use.
		return "vm.arrayzone:\nITEM                       SIZE     LIMIT    USED    FREE  REQUESTS\nsocket:                     192,     5000,     45,   4955,    63882\n"
	case len(f) == 3 && f[0] == "ssl" && f[1] == "certificate":
		na, ok := e.certs[f[2]]
		if !ok {
			return errf("SSL host %q has no certificate", f[2])
		}
		return fmt.Sprintf("Certificate:\n    Data:\n        Version: 3 (0x2)\n        Subject: CN=%s\n        Validity\n            Not Before: %s\n            Not After : %s\n",
			f[2], na.AddDate(-1, 0, 0).UTC().Format("Jan _2 15:04:05 2006 GMT"), na.UTC().Format("Jan _2 15:04:05 2006 GMT"))
	case arg == "health server":
		return e.showHealthServer()
	case arg == "statistics slb all":
		return e.showSLBStatistics()
	}
	return errf("unknown command show %s", arg)
}

// The emulated HA pair: the local unit and its peer, named the way Array's
// LBaaS agent names them.
const (
	unitM   = "unit_m"
	unitMIP = "192.0.2.10"
	unitS   = "unit_s"
	unitSIP = "192.0.2.11"
)

// showHAConfig prints HA configuration lines in the forms Array's LBaaS
// agent configures (ha unit, ha group ...) and reads back ("ha off").
func (e *Emulator) showHAConfig() string {
	var b strings.Builder
	if e.haUnits {
		fmt.Fprintf(&b, "ha unit %q %s 65521\nha unit %q %s 65521\n", unitM, unitMIP, unitS, unitSIP)
		fmt.Fprintf(&b, "ha group id 1\nha group priority %s 1 100\nha group priority %s 1 90\nha group enable 1\n", unitM, unitS)
	}
	if e.haState == "off" {
		b.WriteString("ha off\n")
	} else {
		b.WriteString("ha on\n")
	}
	return b.String()
}

func (e *Emulator) peerRole() string {
	if e.peerState != "" {
		return e.peerState
	}
	switch e.haState {
	case "active":
		return "standby"
	case "standby":
		return "active"
	}
	return e.haState
}

// showHAStatus has no public sample; this layout is the emulator's own. It
// lists the peer first, so a parser that takes the first role word reports
// the peer's state as the local one (the mistake the driver must not make).
func (e *Emulator) showHAStatus() string {
	if e.haState == "off" || !e.haUnits {
		return "HA is off\n"
	}
	return fmt.Sprintf("Unit Name       Group ID   State\n%-15s %-10d %s\n%-15s %-10d %s\n",
		unitS, 1, title(e.peerRole()), unitM, 1, title(e.haState))
}

// showHADomain prints one line per unit with UP or DOWN, what Array's
// LBaaS agent reads (a line holding the unit name and "UP"); the column
// layout is the emulator's own.
func (e *Emulator) showHADomain() string {
	if !e.haUnits {
		return ""
	}
	peer := "UP"
	if e.peerDown {
		peer = "DOWN"
	}
	return fmt.Sprintf("Domain ID  Unit Name       IP Address       Status\n1          %-15s %-16s UP\n1          %-15s %-16s %s\n", unitM, unitMIP, unitS, unitSIP, peer)
}

func title(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// printed applies SetNormalize to configuration lines.
func (e *Emulator) printed(lines []string) []string {
	if !e.normalize {
		return lines
	}
	var out []string
	for _, l := range lines {
		f, _ := tokenize(l)
		if len(f) >= 3 && f[0] == "slb" && f[1] == "real" {
			f = append(f, "3", "3") // defaults the device fills in
		}
		if len(f) == 11 && f[0] == "slb" && f[1] == "health" && f[3] == "http" {
			out = append(out, strings.Join(f[:8], "  "), strings.Join([]string{"slb", "health", f[2], "request", f[8], strconv.Quote(f[9]), strconv.Quote(f[10])}, "  "))
			continue
		}
		out = append(out, strings.Join(f, "  "))
	}
	return out
}

func (e *Emulator) showInterfaces() string {
	var b strings.Builder
	for _, i := range e.interfaces {
		flags, status := "8843<UP,BROADCAST,RUNNING,SIMPLEX>", "active"
		if !i.up {
			flags, status = "8842<BROADCAST,SIMPLEX>", "no carrier"
		}
		fmt.Fprintf(&b, "%s(%s): flags=%s mtu 1500\n        ether 00:25:90:05:6d:82\n        media: autoselect (1000baseT <full-duplex>)\n        status: %s\n        webwall status: OFF\n\n", i.name, i.port, flags, status)
	}
	return b.String()
}

func (e *Emulator) realUp(name string) bool { return !e.realDown[name] }

func (e *Emulator) virtualUp(name string) bool {
	g := e.running.groups[e.running.policies[name]]
	if g == nil {
		return false
	}
	for _, m := range g.members {
		if e.realUp(m.real) {
			return true
		}
	}
	return false
}

func updown(b bool) string {
	if b {
		return "UP"
	}
	return "DOWN"
}

// showHealthServer follows the `show health server` layout published in
// netkiller's Array notes (and parsed by Array's LBaaS agent).
func (e *Emulator) showHealthServer() string {
	var b strings.Builder
	b.WriteString("----------------------------------- Server Status ---------------------------------\nreal server name      status\n")
	names := slices.Sorted(maps.Keys(e.running.reals))
	for _, n := range names {
		fmt.Fprintf(&b, "%-21s %s\n", n, updown(e.realUp(n)))
	}
	b.WriteString("----------------------------------- Health Check ----------------------------------\nreal server name      ip              :port    status  hct        rqr rpr checklist\n-----------------------------------------------------------------------------------\n")
	for _, n := range names {
		r := e.running.reals[n]
		fmt.Fprintf(&b, "%-21s %-15s :%-7d %-7s %-10s %3d %3d\n", n, r.ip, r.port, updown(e.realUp(n)), "tcp", 0, 0)
	}
	return b.String()
}

// showSLBStatistics prints `show statistics slb all` in the blocks
// jp05451/array-script's parseSLBStats reads: a "Real service <name> <ip>
// <port> <state>" or "<proto> virtual service "<name>" (<ip> <port>)
// <state>" header, then indented "Key: value" lines with the metric names
// that script knows.
func (e *Emulator) showSLBStatistics() string {
	var b strings.Builder
	c := e.running
	for _, n := range slices.Sorted(maps.Keys(c.virtuals)) {
		v := c.virtuals[n]
		fmt.Fprintf(&b, "%s virtual service %q (%s %d) %s\n", v.proto, n, v.vip, v.port, updown(e.virtualUp(n)))
		statBlock(&b, e.conns[n])
	}
	for _, n := range slices.Sorted(maps.Keys(c.reals)) {
		r := c.reals[n]
		fmt.Fprintf(&b, "Real service %s %s %d %s\n", n, r.ip, r.port, updown(e.realUp(n)))
		statBlock(&b, e.conns[n])
	}
	return b.String()
}

func statBlock(b *strings.Builder, conns int) {
	fmt.Fprintf(b, "    Max Conn Count:                 %d\n    Current Connection Count:       %d\n    Total Hits:                     %d\n    Total Bytes In:                 %d\n    Total Bytes Out:                %d\n    Average Bandwidth In:           0 bps\n    Average Response time:          0.000 ms\n\n",
		conns, conns, conns*10, conns*1000, conns*4000)
}
