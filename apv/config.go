package apv

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Config is the part of a device's SLB configuration the agent owns: every
// object name starts with OwnerPrefix. Maps are keyed by object name.
type Config struct {
	Reals    map[string]Real
	Healths  map[string]Health
	Groups   map[string]Group
	Virtuals map[string]Virtual
	// Policies maps a virtual service to its default group
	// (`slb policy default <vs> <group>`).
	Policies map[string]string
	// Disabled holds the objects the device lists as disabled
	// (`slb real|group|virtual disable <name>`), keyed by kind and name
	// (Key); Diff enables the ones it keeps. Render never sets it.
	Disabled map[Key]bool
}

// Key names one device object: its kind (real, health, group, virtual,
// policy) and its name (a policy is named after its virtual service).
type Key struct {
	Kind, Name string
}

// String renders the key as "<kind> <name>", as status and events show it.
func (k Key) String() string { return k.Kind + " " + k.Name }

// Real is `slb real <proto> <name> <ip> <port> ...`.
type Real struct {
	Name  string
	Proto string // tcp or udp (anything else read back is deleted)
	IP    netip.Addr
	Port  uint16
}

// Health is `slb health <name> <type> <interval> <timeout> <rise> <fall>
// [GET "<path>" "<codes>"]`.
type Health struct {
	Name     string
	Type     string // tcp, icmp or http
	Interval int    // seconds
	Timeout  int    // seconds
	Rise     int
	Fall     int
	Path     string // http only
	Codes    string // http only: "200-399", "200,204"
}

// Group is `slb group method <name> <method>`, with its members
// (`slb group member <group> <real> <weight>`) and its health check
// (`slb group health <group> <health>`).
type Group struct {
	Name    string
	Method  string
	Members map[string]uint32
	Health  string
}

// Virtual is `slb virtual <proto> <name> <vip> <port> arp 0`.
type Virtual struct {
	Name  string
	Proto string
	VIP   netip.Addr
	Port  uint16
}

// NewConfig returns an empty configuration.
func NewConfig() Config {
	return Config{
		Reals:    map[string]Real{},
		Healths:  map[string]Health{},
		Groups:   map[string]Group{},
		Virtuals: map[string]Virtual{},
		Policies: map[string]string{},
		Disabled: map[Key]bool{},
	}
}

// Empty reports whether the configuration holds no object.
func (c Config) Empty() bool {
	return len(c.Reals)+len(c.Healths)+len(c.Groups)+len(c.Virtuals)+len(c.Policies) == 0
}

// Lines renders the configuration as the sorted configuration lines a device
// would show for it (names quoted). Tests compare configurations with it.
func (c Config) Lines() []string {
	var out []string
	for _, r := range c.Reals {
		out = append(out, r.createLine())
	}
	for _, h := range c.Healths {
		out = append(out, h.createLine())
	}
	for _, g := range c.Groups {
		out = append(out, g.methodLine())
		for m, w := range g.Members {
			out = append(out, memberLine(g.Name, m, w))
		}
		if g.Health != "" {
			out = append(out, groupHealthLine(g.Name, g.Health))
		}
	}
	for _, v := range c.Virtuals {
		out = append(out, v.createLine())
	}
	for vs, g := range c.Policies {
		out = append(out, policyLine(vs, g))
	}
	slices.Sort(out)
	return out
}

// The command forms (docs/apv.md names the public source of each). Array's
// LBaaS agent sends TCP reals as `slb real tcp <name> <ip> <port> 65535
// none` (max_conn, then the per-real check: none, the group's health check
// decides) and virtual services with `arp <max_conn>`.

func (r Real) createLine() string {
	if r.Proto == "udp" {
		// UDP reals take [max_conn] [hc_up] [hc_down] [timeout] [hc_type];
		// this is the form of jp05451/array-script (APVSetup.py
		// setupUDPLoadBalancer), which drives real APVs: no connection
		// limit, 3/3, a 60 s session timeout, no per-real check.
		return fmt.Sprintf("slb real udp %s %s %d 0 3 3 60 none", q(r.Name), r.IP, r.Port)
	}
	return fmt.Sprintf("slb real %s %s %s %d 65535 none", r.Proto, q(r.Name), r.IP, r.Port)
}

// enableLine is `slb <kind> enable <name>`. jp05451/array-script enables
// every real, group and virtual service right after creating it; the agent
// does the same (docs/apv.md).
func enableLine(kind, name string) string { return fmt.Sprintf("slb %s enable %s", kind, q(name)) }

// isEnableLine tells the enable commands apart: a device that rejects one
// has still created the object, so the sync goes on (see doSync).
func isEnableLine(line string) bool {
	f := strings.Fields(line)
	return len(f) == 4 && f[0] == "slb" && f[2] == "enable"
}

func (r Real) deleteLine() string { return fmt.Sprintf("no slb real %s %s", r.Proto, q(r.Name)) }

func (h Health) createLine() string {
	s := fmt.Sprintf("slb health %s %s %d %d %d %d", q(h.Name), h.Type, h.Interval, h.Timeout, h.Rise, h.Fall)
	if h.Type == "http" {
		s += fmt.Sprintf(" GET %s %s", q(h.Path), q(h.Codes))
	}
	return s
}

func (h Health) deleteLine() string { return "no slb health " + q(h.Name) }

func (g Group) methodLine() string { return fmt.Sprintf("slb group method %s %s", q(g.Name), g.Method) }

func (g Group) deleteLine() string { return "no slb group method " + q(g.Name) }

func memberLine(group, real string, w uint32) string {
	return fmt.Sprintf("slb group member %s %s %d", q(group), q(real), w)
}

func noMemberLine(group, real string) string {
	return fmt.Sprintf("no slb group member %s %s", q(group), q(real))
}

func groupHealthLine(group, health string) string {
	return fmt.Sprintf("slb group health %s %s", q(group), q(health))
}

func noGroupHealthLine(group, health string) string {
	return fmt.Sprintf("no slb group health %s %s", q(group), q(health))
}

func (v Virtual) createLine() string {
	return fmt.Sprintf("slb virtual %s %s %s %d arp 0", v.Proto, q(v.Name), v.VIP, v.Port)
}

func (v Virtual) deleteLine() string { return fmt.Sprintf("no slb virtual %s %s", v.Proto, q(v.Name)) }

func policyLine(vs, group string) string {
	return fmt.Sprintf("slb policy default %s %s", q(vs), q(group))
}

func noPolicyLine(vs string) string { return "no slb policy default " + q(vs) }

// WriteMemory saves the running configuration.
const WriteMemory = "write memory"

// owned reports whether a device object name belongs to the agent.
func owned(name string) bool { return strings.HasPrefix(name, OwnerPrefix) }
