package apv

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/arraynetworks/edgeagent/model"
)

// Object name shapes (all at most MaxObjectNameLen characters):
//
//	ea_v_<vsName≤17>_<t|u><port>_<hash6>   virtual service
//	ea_g_<group≤17>_<t|u><port>_<hash6>    group (one per virtual service)
//	ea_h_<group≤17>_<t|u><port>_<hash6>    health check of that group
//	ea_r<t|u>_<ipv4>_<port>                real (shared by every group that
//	ea_r<t|u>_<hash12 of ipv6>_<port>      uses the same ip:port)
//
// hash6 is the start of sha256(virtual-service key), so two LBRoutes that
// choose the same vsName still get distinct objects, and the same key always
// yields the same names: a restarted agent finds and adopts its objects.
// Groups are per virtual service, not per LBRoute group name, because the
// reals of each port differ (targetPort).

// MethodFor maps an LBRoute policy onto an ArrayOS group method.
//
//	rr     → rr   members weighted 1
//	wrr    → rr   members carry their weights (ArrayOS has no separate
//	              weighted keyword; the member weight is the knob)
//	random → rr   ArrayOS publishes no random method; rr spreads new
//	              connections evenly, which is what random is used for
//	sh     → chi  Consistent Hash IP: source-address affinity that survives
//	              an HA failover and a real going down
func MethodFor(p model.Policy) (method string, weighted bool, err error) {
	switch p {
	case model.RoundRobin, "":
		return "rr", false, nil
	case model.WeightedRoundRobin:
		return "rr", true, nil
	case model.Random:
		return "rr", false, nil
	case model.SourceHash:
		return "chi", false, nil
	}
	return "", false, fmt.Errorf("policy: %q is not one of rr, wrr, random, sh", printable(string(p)))
}

// Names are the device object names of one virtual service.
type Names struct {
	Virtual, Group, Health string
}

// NamesFor derives the object names of a virtual service. It assumes
// vs.Name and vs.Group passed checkSourceName.
func NamesFor(vs *model.VirtualService) Names {
	sum := sha256.Sum256([]byte(vs.Key()))
	suffix := fmt.Sprintf("%s%d_%s", protoLetter(vs.Protocol), vs.Port, hex.EncodeToString(sum[:3]))
	room := MaxObjectNameLen - len("ea_v_") - 1 - len(suffix)
	group := cmp.Or(vs.Group, vs.Name)
	return Names{
		Virtual: OwnerPrefix + "v_" + trunc(vs.Name, room) + "_" + suffix,
		Group:   OwnerPrefix + "g_" + trunc(group, room) + "_" + suffix,
		Health:  OwnerPrefix + "h_" + trunc(group, room) + "_" + suffix,
	}
}

// RealName derives the name of the real for proto ip:port.
func RealName(p model.Protocol, r model.Real) string {
	ip := r.IP.String()
	if !r.IP.Is4() {
		sum := sha256.Sum256(r.IP.AsSlice())
		ip = hex.EncodeToString(sum[:6])
	}
	return fmt.Sprintf("%sr%s_%s_%d", OwnerPrefix, protoLetter(p), ip, r.Port)
}

func protoLetter(p model.Protocol) string {
	if p == model.UDP {
		return "u"
	}
	return "t"
}

func arrayProto(p model.Protocol) string { return strings.ToLower(string(p)) }

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Render turns the desired state into the device configuration the agent
// wants. A virtual service with a value that cannot be sent safely is
// refused: it is left out and named in the returned error, and the others
// are rendered. Terminating reals are left out; every other real is
// programmed whatever the agent's own probe says, because the APV runs the
// same health check itself (slb health) from where it actually sends
// traffic, and following the edge node's verdicts would rewrite and save the
// device configuration on every flap.
func Render(s model.State) (Config, error) {
	st := s.Clone()
	st.Sort()
	out := NewConfig()
	var errs []error
	for i := range st.Services {
		vs := &st.Services[i]
		if err := renderService(out, vs); err != nil {
			errs = append(errs, fmt.Errorf("virtual service %s refused: %w", vs.Key(), err))
		}
	}
	return out, errors.Join(errs...)
}

// renderService validates one virtual service completely before adding
// anything, so a refused service leaves no partial objects behind.
func renderService(out Config, vs *model.VirtualService) error {
	if err := checkSourceName("vsName", vs.Name); err != nil {
		return err
	}
	if vs.Group != "" {
		if err := checkSourceName("group", vs.Group); err != nil {
			return err
		}
	}
	if !vs.VIP.IsValid() || vs.VIP.Zone() != "" {
		return fmt.Errorf("vsIP: %q is not a plain IP address", printable(vs.VIP.String()))
	}
	if vs.Port == 0 {
		return fmt.Errorf("port: must be 1-65535")
	}
	if vs.Protocol != model.TCP && vs.Protocol != model.UDP {
		return fmt.Errorf("protocol: %q is not TCP or UDP", printable(string(vs.Protocol)))
	}
	method, weighted, err := MethodFor(vs.Policy)
	if err != nil {
		return err
	}
	n := NamesFor(vs)
	for _, name := range []string{n.Virtual, n.Group, n.Health} {
		if err := checkObjectName(name); err != nil {
			return err
		}
	}
	health, hasHealth, err := renderHealth(n.Health, vs.Protocol, vs.Health)
	if err != nil {
		return err
	}
	proto := arrayProto(vs.Protocol)
	members := map[string]uint32{}
	reals := map[string]Real{}
	for i, r := range vs.Reals {
		if r.Terminating {
			continue
		}
		if !r.IP.IsValid() || r.IP.Zone() != "" || r.Port == 0 {
			return fmt.Errorf("reals[%d]: %q is not an ip:port", i, printable(r.Endpoint().String()))
		}
		ip := r.IP.Unmap()
		r.IP = ip
		name := RealName(vs.Protocol, r)
		if err := checkObjectName(name); err != nil {
			return err
		}
		w := uint32(1)
		if weighted {
			w = min(max(r.Weight, 1), 100)
		}
		members[name] = w
		reals[name] = Real{Name: name, Proto: proto, IP: ip, Port: r.Port}
	}
	for name, r := range reals {
		out.Reals[name] = r
	}
	g := Group{Name: n.Group, Method: method, Members: members}
	if hasHealth {
		out.Healths[health.Name] = health
		g.Health = health.Name
	}
	out.Groups[g.Name] = g
	out.Virtuals[n.Virtual] = Virtual{Name: n.Virtual, Proto: proto, VIP: vs.VIP.Unmap(), Port: vs.Port}
	out.Policies[n.Virtual] = n.Group
	return nil
}

// renderHealth maps the health spec onto `slb health`. Durations are whole
// seconds, rounded up, at least 1.
//
// A UDP service whose LBRoute did not choose a check type gets an ICMP check
// (Array's LBaaS agent maps PING to `slb health <name> icmp ...`): the
// default TCP connect would probe a port the real does not serve over TCP
// and mark every real down. A TCP check the LBRoute asks for explicitly is
// kept (a DNS server, say, answers on TCP 53 too).
func renderHealth(name string, proto model.Protocol, h model.HealthSpec) (Health, bool, error) {
	secs := func(d time.Duration) int {
		return max(1, int(math.Ceil(d.Seconds())))
	}
	out := Health{Name: name, Interval: secs(h.Interval), Timeout: secs(h.Timeout), Rise: max(1, h.Rise), Fall: max(1, h.Fall)}
	switch h.Type {
	case model.HealthNone:
		return Health{}, false, nil
	case model.HealthTCP, "":
		out.Type = "tcp"
		if proto == model.UDP && (h.TypeDefaulted || h.Type == "") {
			out.Type = "icmp"
		}
	case model.HealthHTTP:
		out.Type = "http"
		out.Path = cmp.Or(h.Path, "/")
		if len(out.Path) > maxPathLen || !pathRE.MatchString(out.Path) {
			return Health{}, false, fmt.Errorf("healthCheck.path: %q must be an absolute path of at most %d characters without quotes, blanks, backslashes, ';' or '$' (ArrayOS command syntax)", printable(out.Path), maxPathLen)
		}
		out.Codes = "200-399"
		if len(h.ExpectedStatus) > 0 {
			parts := make([]string, 0, len(h.ExpectedStatus))
			for _, r := range h.ExpectedStatus {
				parts = append(parts, r.String())
			}
			out.Codes = strings.Join(parts, ",")
		}
		if !codesRE.MatchString(out.Codes) {
			return Health{}, false, fmt.Errorf("healthCheck.expectedStatus: %q is not a list of status codes", printable(out.Codes))
		}
	default:
		return Health{}, false, fmt.Errorf("healthCheck.type: %q is not TCP, HTTP or None", printable(string(h.Type)))
	}
	return out, true, nil
}
