package translate

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Limits that are part of the LBRoute contract (documented in README.md).
const (
	// MaxAPVNameLen bounds vsName and group. ArrayOS object names are
	// limited in length; 63 is the value this project commits to and the APV
	// driver derives its own shorter, prefixed names from it.
	MaxAPVNameLen = 63
	// MaxPorts and MaxRealServers bound list sizes so one object cannot
	// make the agent render millions of rules.
	MaxPorts       = 64
	MaxRealServers = 1024
	// MaxCommunities bounds each BGP community list.
	MaxCommunities = 32
)

// The patterns below are also in the CRD (api/v1alpha1 markers), so the
// apiserver refuses at apply time what the agent would refuse later;
// translate/testdata/parity proves both agree.
var (
	apvNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	hostRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.:\[\]-]*[A-Za-z0-9\]])?$`)
	pathRE    = regexp.MustCompile(`^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$`)
	// digitsRE is a targetPort written as a string of digits ("8080"):
	// a number, not a port name. Unlike strconv.Atoi it takes no sign.
	digitsRE     = regexp.MustCompile(`^[0-9]+$`)
	statusPartRE = regexp.MustCompile(`^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$`)
	wellKnownCm  = map[string]bool{"no-export": true, "no-advertise": true, "no-export-subconfed": true, "no-peer": true}
)

type validator struct{ problems model.Problems }

func (v *validator) add(field, reason, format string, args ...any) {
	v.problems = append(v.problems, model.Problem{Field: field, Reason: reason, Detail: fmt.Sprintf(format, args...)})
}

func (v *validator) invalid(field, format string, args ...any) {
	v.add(field, model.ReasonInvalidSpec, format, args...)
}

func (v *validator) objectMeta(rt *v1alpha1.LBRoute) {
	// The apiserver's own rules for the names of namespaced custom resources.
	if rt.Name == "" {
		v.invalid("metadata.name", "must be set")
	} else if errs := validation.IsDNS1123Subdomain(rt.Name); len(errs) > 0 {
		v.invalid("metadata.name", "%q: %s", printable(rt.Name), strings.Join(errs, "; "))
	}
	if rt.Namespace == "" {
		v.invalid("metadata.namespace", "must be set")
	} else if errs := validation.IsDNS1123Label(rt.Namespace); len(errs) > 0 {
		v.invalid("metadata.namespace", "%q: %s", printable(rt.Namespace), strings.Join(errs, "; "))
	}
}

func (v *validator) vip(s, ns string, pools []model.Pool) netip.Addr {
	const f = "spec.vsIP"
	if s == "" {
		v.invalid(f, "must be set")
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		v.invalid(f, "%q is not an IP address", printable(s))
		return netip.Addr{}
	}
	switch {
	case ip.Zone() != "":
		v.invalid(f, "must not carry an IPv6 zone")
	case ip.Is4In6():
		v.invalid(f, "use the IPv4 form, not IPv4-mapped IPv6 %s", ip)
	case !ip.IsGlobalUnicast():
		// Unspecified, loopback, multicast, link-local or broadcast: the
		// CRD's rule is the same function, CEL's ip(...).isGlobalUnicast().
		v.invalid(f, "%s is not a unicast address a VIP can use (not unspecified, loopback, multicast, link-local or broadcast)", ip)
	default:
		if !model.AnyAdmits(pools, ns, ip) {
			v.add(f, model.ReasonVIPNotAllowed, "%s is in no VIP pool that admits namespace %q", ip, ns)
		}
		return ip
	}
	return netip.Addr{}
}

func (v *validator) apvName(field, name, hint string) {
	switch {
	case !utf8.ValidString(name):
		v.invalid(field, "must be valid UTF-8")
	case len(name) > MaxAPVNameLen:
		msg := fmt.Sprintf("must be at most %d characters (APV object name limit), got %d", MaxAPVNameLen, len(name))
		if hint != "" {
			msg += "; " + hint
		}
		v.invalid(field, "%s", msg)
	case !apvNameRE.MatchString(name):
		v.invalid(field, "%q must start with a letter or digit and contain only letters, digits, '_', '.', '-'", printable(name))
	}
}

func (v *validator) policy(p v1alpha1.Policy) model.Policy {
	if p == "" {
		return model.RoundRobin
	}
	if !slices.Contains(model.Policies, model.Policy(p)) {
		v.invalid("spec.policy", "%q is not one of rr, wrr, random, sh", printable(string(p)))
		return ""
	}
	return model.Policy(p)
}

func (v *validator) ports(ps []v1alpha1.LBRoutePort, serviceForm bool) []port {
	if len(ps) == 0 {
		v.invalid("spec.ports", "at least one port is required")
		return nil
	}
	if len(ps) > MaxPorts {
		v.invalid("spec.ports", "at most %d ports, got %d", MaxPorts, len(ps))
		return nil
	}
	seen := map[string]int{}
	out := make([]port, 0, len(ps))
	for i, p := range ps {
		f := fmt.Sprintf("spec.ports[%d]", i)
		ok := true
		if p.Port < 1 || p.Port > 65535 {
			v.invalid(f+".port", "must be 1-65535, got %d", p.Port)
			ok = false
		}
		proto := model.Protocol(p.Protocol)
		switch proto {
		case "":
			proto = model.TCP
		case model.TCP, model.UDP:
		default:
			v.invalid(f+".protocol", "%q is not TCP or UDP", printable(string(p.Protocol)))
			ok = false
		}
		out1 := port{port: uint16(p.Port), protocol: proto}
		if tp := p.TargetPort; tp != nil {
			if tp.Type == intstr.Int {
				if tp.IntVal < 1 || tp.IntVal > 65535 {
					v.invalid(f+".targetPort", "must be 1-65535, got %d", tp.IntVal)
					ok = false
				}
				out1.targetNum = uint16(tp.IntVal)
			} else if digitsRE.MatchString(tp.StrVal) {
				// "8080" written as a string: accept it as a number (of at
				// most five digits, as the CRD's rule says).
				n, err := strconv.Atoi(tp.StrVal)
				if err != nil || len(tp.StrVal) > 5 || n < 1 || n > 65535 {
					v.invalid(f+".targetPort", "must be 1-65535, got %s", printable(tp.StrVal))
					ok = false
				}
				out1.targetNum = uint16(n)
			} else if !serviceForm {
				v.invalid(f+".targetPort", "a port name (%q) needs spec.service; with realServers use a number", printable(tp.StrVal))
				ok = false
			} else if errs := validation.IsValidPortName(tp.StrVal); len(errs) > 0 {
				v.invalid(f+".targetPort", "%q is not a valid port name (IANA_SVC_NAME): %s", printable(tp.StrVal), strings.Join(errs, "; "))
				ok = false
			} else {
				out1.targetName = tp.StrVal
			}
		}
		if ok {
			k := fmt.Sprintf("%s/%d", proto, p.Port)
			if j, dup := seen[k]; dup {
				v.invalid(f, "duplicate of spec.ports[%d] (%d/%s)", j, p.Port, proto)
				continue
			}
			seen[k] = i
			out = append(out, out1)
		}
	}
	return out
}

func (v *validator) realServers(rs []v1alpha1.RealServer, vip netip.Addr) {
	if len(rs) == 0 {
		v.invalid("spec.realServers", "must list at least one real server")
		return
	}
	if len(rs) > MaxRealServers {
		v.invalid("spec.realServers", "at most %d real servers, got %d", MaxRealServers, len(rs))
		return
	}
	// A real is its address (compared as an address: "fd00::a" and
	// "fd00:0::a" are one) and its port override.
	type key struct {
		ip   netip.Addr
		port int32 // 0: no override
	}
	seen := map[key]int{}
	for i, r := range rs {
		f := fmt.Sprintf("spec.realServers[%d]", i)
		ip, err := netip.ParseAddr(r.IP)
		switch {
		case r.IP == "":
			v.invalid(f+".ip", "must be set")
		case err != nil:
			v.invalid(f+".ip", "%q is not an IP address", printable(r.IP))
		case ip.Zone() != "":
			v.invalid(f+".ip", "must not carry an IPv6 zone")
		case ip.Is4In6():
			v.invalid(f+".ip", "use the IPv4 form, not IPv4-mapped IPv6 %s", ip)
		case ip.IsUnspecified(), ip.IsMulticast(), ip.IsLoopback():
			v.invalid(f+".ip", "%s cannot be a real server (unspecified, loopback or multicast)", ip)
		case vip.IsValid() && ip.Is4() != vip.Is4():
			v.invalid(f+".ip", "%s is not the same IP family as vsIP %s", ip, vip)
		}
		var port int32
		if r.Port != nil {
			port = *r.Port
			if port < 1 || port > 65535 {
				v.invalid(f+".port", "must be 1-65535, got %d", port)
			}
		}
		if r.Weight != nil && (*r.Weight < 1 || *r.Weight > 100) {
			v.invalid(f+".weight", "must be 1-100, got %d", *r.Weight)
		}
		if err != nil {
			continue
		}
		k := key{ip, port}
		if j, dup := seen[k]; dup {
			v.invalid(f, "duplicate of spec.realServers[%d] (%s)", j, r.IP)
		}
		seen[k] = i
	}
}

func (v *validator) health(hc *v1alpha1.HealthCheck) model.HealthSpec {
	h := model.DefaultHealth
	if hc == nil {
		return h
	}
	const f = "spec.healthCheck"
	switch hc.Type {
	case "":
		h.Type = model.HealthTCP
	case v1alpha1.HealthCheckType(model.HealthTCP):
		h.Type, h.TypeDefaulted = model.HealthTCP, false
	case v1alpha1.HealthCheckType(model.HealthHTTP):
		h.Type, h.TypeDefaulted = model.HealthHTTP, false
		h.Path = "/"
	case v1alpha1.HealthCheckType(model.HealthNone):
		h.Type, h.TypeDefaulted = model.HealthNone, false
	default:
		v.invalid(f+".type", "%q is not TCP, HTTP or None", printable(string(hc.Type)))
	}
	// The numbers are pointers so that an explicit 0 is refused, as the
	// apiserver refuses it, rather than read as "unset".
	secs := func(name string, n *int32, def time.Duration) time.Duration {
		switch {
		case n == nil:
			return def
		case *n < 1 || *n > 3600:
			v.invalid(f+"."+name, "must be 1-3600 seconds, got %d", *n)
			return def
		}
		return time.Duration(*n) * time.Second
	}
	h.Interval = secs("intervalSeconds", hc.IntervalSeconds, h.Interval)
	h.Timeout = secs("timeoutSeconds", hc.TimeoutSeconds, h.Timeout)
	if hc.TimeoutSeconds != nil && hc.IntervalSeconds != nil && *hc.TimeoutSeconds > *hc.IntervalSeconds {
		v.invalid(f+".timeoutSeconds", "must not exceed intervalSeconds (%d > %d)", *hc.TimeoutSeconds, *hc.IntervalSeconds)
	} else if h.Timeout > h.Interval {
		// A default on one side: keep the probe within its interval.
		h.Timeout = h.Interval
	}
	count := func(name string, n *int32, def int) int {
		switch {
		case n == nil:
			return def
		case *n < 1 || *n > 100:
			v.invalid(f+"."+name, "must be 1-100, got %d", *n)
			return def
		}
		return int(*n)
	}
	h.Rise = count("riseCount", hc.RiseCount, h.Rise)
	h.Fall = count("fallCount", hc.FallCount, h.Fall)
	if hc.Path != "" {
		if len(hc.Path) > 1024 || !pathRE.MatchString(hc.Path) {
			v.invalid(f+".path", "must start with '/' and hold only URL characters (no spaces or quotes), at most 1024")
		} else {
			h.Path = hc.Path
		}
	}
	if hc.Host != "" {
		if len(hc.Host) > 253 || !hostRE.MatchString(hc.Host) {
			v.invalid(f+".host", "%q is not a host name or address", printable(hc.Host))
		} else {
			h.Host = hc.Host
		}
	}
	if hc.ExpectedStatus != nil {
		rs, err := parseStatus(*hc.ExpectedStatus)
		if err != nil {
			v.invalid(f+".expectedStatus", "%v", err)
		} else {
			h.ExpectedStatus = rs
		}
	}
	if h.Type != model.HealthHTTP && (hc.Path != "" || hc.ExpectedStatus != nil || hc.Host != "") {
		v.invalid(f+".type", "path, host and expectedStatus apply only to type HTTP")
	}
	return h
}

// parseStatus reads 200, "200", "200-299" or "200-299, 301": codes of three
// digits within 100-599, ranges low to high, space allowed around commas.
// The CRD's CEL rule on expectedStatus is the same grammar.
func parseStatus(s intstr.IntOrString) ([]model.StatusRange, error) {
	if s.Type == intstr.Int {
		if s.IntVal < 100 || s.IntVal > 599 {
			return nil, fmt.Errorf("status %d is not 100-599", s.IntVal)
		}
		return []model.StatusRange{{Min: int(s.IntVal), Max: int(s.IntVal)}}, nil
	}
	if len(s.StrVal) > 256 {
		return nil, fmt.Errorf("must be a status code or a list such as \"200-299,301\" of at most 256 characters")
	}
	var out []model.StatusRange
	for part := range strings.SplitSeq(s.StrVal, ",") {
		part = strings.TrimSpace(part)
		if !statusPartRE.MatchString(part) {
			return nil, fmt.Errorf("%q is not a status code or range within 100-599", printable(part))
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if isRange {
			b, _ = strconv.Atoi(hi)
		}
		if a > b {
			return nil, fmt.Errorf("%q is not a range within 100-599 (low to high)", printable(part))
		}
		out = append(out, model.StatusRange{Min: a, Max: b})
	}
	return out, nil
}

func (v *validator) bgp(b *v1alpha1.BGPAdvertisement) model.Advertisement {
	var a model.Advertisement
	if b == nil {
		return a
	}
	const f = "spec.bgp"
	if len(b.Communities) > MaxCommunities {
		v.invalid(f+".communities", "at most %d, got %d", MaxCommunities, len(b.Communities))
	} else {
		for i, c := range b.Communities {
			if !validCommunity(c) {
				v.invalid(fmt.Sprintf("%s.communities[%d]", f, i), "%q is not ASN:VALUE (each 0-65535) or a well-known community", printable(c))
				continue
			}
			a.Communities = append(a.Communities, strings.ToLower(c))
		}
	}
	if len(b.LargeCommunities) > MaxCommunities {
		v.invalid(f+".largeCommunities", "at most %d, got %d", MaxCommunities, len(b.LargeCommunities))
	} else {
		for i, c := range b.LargeCommunities {
			if !validLargeCommunity(c) {
				v.invalid(fmt.Sprintf("%s.largeCommunities[%d]", f, i), "%q is not ASN:X:Y (each 0-4294967295)", printable(c))
				continue
			}
			a.LargeCommunities = append(a.LargeCommunities, c)
		}
	}
	if b.LocalPref != nil {
		if *b.LocalPref < 0 || *b.LocalPref > 4294967295 {
			v.invalid(f+".localPref", "must be 0-4294967295, got %d", *b.LocalPref)
		} else {
			lp := uint32(*b.LocalPref)
			a.LocalPref = &lp
		}
	}
	return a
}

func validCommunity(c string) bool {
	if wellKnownCm[strings.ToLower(c)] {
		return true
	}
	parts := strings.Split(c, ":")
	if len(parts) != 2 {
		return false
	}
	for _, p := range parts {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || strconv.FormatUint(n, 10) != p {
			return false
		}
	}
	return true
}

func validLargeCommunity(c string) bool {
	parts := strings.Split(c, ":")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if n, err := strconv.ParseUint(p, 10, 32); err != nil || strconv.FormatUint(n, 10) != p {
			return false
		}
	}
	return true
}

// printable quotes user input safely for messages: invalid UTF-8 and control
// characters become escapes (by %q at the call site) and long values are cut.
func printable(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return s
}
