// Package model holds the agent's desired state: plain Go values that every
// reconciler (dataplane, BGP, APV) consumes and that the status reports. It
// does no I/O and imports nothing from Kubernetes, netlink or GoBGP, so the
// translation from LBRoutes and every reconciler's diff can be tested as pure
// functions.
package model

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Protocol is the L4 protocol of a virtual service.
type Protocol string

// Protocols a virtual service may use.
const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// Policy is the load-balancing method across a virtual service's reals.
type Policy string

// Load-balancing policies.
const (
	RoundRobin         Policy = "rr"
	WeightedRoundRobin Policy = "wrr"
	Random             Policy = "random"
	SourceHash         Policy = "sh"
)

// Policies lists every valid policy, in documentation order.
var Policies = []Policy{RoundRobin, WeightedRoundRobin, Random, SourceHash}

// HealthType selects the active probe run against each real.
type HealthType string

// Health-check types.
const (
	HealthTCP  HealthType = "TCP"
	HealthHTTP HealthType = "HTTP"
	HealthNone HealthType = "None"
)

// StatusRange is an inclusive range of HTTP status codes accepted by an HTTP
// health check; a single code has Min == Max.
type StatusRange struct {
	Min, Max int
}

// String renders the range as "200" or "200-299".
func (r StatusRange) String() string {
	if r.Min == r.Max {
		return fmt.Sprint(r.Min)
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// HealthSpec describes how the reals of a virtual service are probed.
type HealthSpec struct {
	Type HealthType
	// TypeDefaulted is true when the LBRoute did not choose the type (no
	// healthCheck, or one without type): consumers for which TCP is the
	// wrong default, such as the APV's check of a UDP service, pick their
	// own.
	TypeDefaulted bool
	Interval      time.Duration
	Timeout       time.Duration
	// Rise is the number of consecutive successes that bring a real back;
	// Fall the number of consecutive failures that take it out.
	Rise int
	Fall int
	// HTTP only.
	Path           string
	Host           string
	ExpectedStatus []StatusRange
}

// Accepts reports whether an HTTP status code satisfies the check.
func (h HealthSpec) Accepts(code int) bool {
	if len(h.ExpectedStatus) == 0 {
		return code >= 200 && code < 400
	}
	for _, r := range h.ExpectedStatus {
		if code >= r.Min && code <= r.Max {
			return true
		}
	}
	return false
}

// DefaultHealth is the check used when an LBRoute names none: a TCP connect
// every 5 s, the values the DESIGN example uses.
var DefaultHealth = HealthSpec{Type: HealthTCP, TypeDefaulted: true, Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}

// Real is one real server (a pod IP or a static address) behind a virtual
// service.
type Real struct {
	IP     netip.Addr
	Port   uint16
	Weight uint32
	// Terminating marks a Kubernetes endpoint that is shutting down: it gets no
	// new connections, but established ones are left alone (drained, not cut).
	Terminating bool
	// Healthy is the verdict of the active health check. Translation sets it to
	// true (a real is presumed up until probes say otherwise, as HAProxy and
	// the APV do); the healthcheck package lowers it.
	Healthy bool
}

// Eligible reports whether the real may receive new connections.
func (r Real) Eligible() bool { return r.Healthy && !r.Terminating }

// Endpoint is the real's "ip:port" form.
func (r Real) Endpoint() netip.AddrPort { return netip.AddrPortFrom(r.IP, r.Port) }

// Advertisement carries the BGP attributes an LBRoute asks for its VIP.
type Advertisement struct {
	Communities      []string // "65000:100" or well-known names (no-export, ...)
	LargeCommunities []string // "64512:1:2"
	LocalPref        *uint32
}

// VirtualService is one (VIP, port, protocol) with its reals: what one entry
// of an LBRoute's ports becomes.
type VirtualService struct {
	// Source LBRoute.
	Namespace string
	Route     string
	// Name is the APV virtual-service name (spec.vsName, default
	// <namespace>-<name>); Group the real-service group name.
	Name  string
	Group string

	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
	Policy   Policy
	Reals    []Real
	Health   HealthSpec
	BGP      Advertisement
}

// Key identifies a virtual service across the agent: "ns/route/TCP/80".
// It is stable for a given LBRoute entry and used in metrics, status and
// kernel object names.
func (vs *VirtualService) Key() string {
	// Concatenation, not Sprintf: keys are made for every service on every
	// reconcile (sorting, maps), and Sprintf was a third of a reconcile's
	// CPU at 10,000 services.
	return vs.Namespace + "/" + vs.Route + "/" + string(vs.Protocol) + "/" + strconv.FormatUint(uint64(vs.Port), 10)
}

// Frontend is the (VIP, port, protocol) the virtual service listens on.
func (vs *VirtualService) Frontend() Frontend {
	return Frontend{VIP: vs.VIP, Port: vs.Port, Protocol: vs.Protocol}
}

// EligibleCount is how many reals may receive new connections.
func (vs *VirtualService) EligibleCount() int {
	n := 0
	for _, r := range vs.Reals {
		if r.Eligible() {
			n++
		}
	}
	return n
}

// Frontend is the address a virtual service accepts traffic on. Two
// virtual services may not share one.
type Frontend struct {
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
}

func (f Frontend) String() string {
	return fmt.Sprintf("%s %s", f.Protocol, netip.AddrPortFrom(f.VIP, f.Port))
}

// State is the whole desired state handed to every reconciler.
type State struct {
	Services []VirtualService
}

// Sort orders services by key so that renders and diffs are deterministic,
// and each service's reals by endpoint. Reals are sorted only when they are
// not in order already, so a state built from reals that are shared with an
// earlier state (translate's memo) is never written to.
func (s *State) Sort() {
	SortServices(s.Services)
	for i := range s.Services {
		SortReals(s.Services[i].Reals)
	}
}

// SortServices orders services by key, making each key once.
func SortServices(vss []VirtualService) {
	if len(vss) < 2 {
		return
	}
	keys := make([]string, len(vss))
	idx := make([]int, len(vss))
	for i := range vss {
		keys[i], idx[i] = vss[i].Key(), i
	}
	if slices.IsSortedFunc(idx, func(a, b int) int { return strings.Compare(keys[a], keys[b]) }) {
		return
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	sorted := make([]VirtualService, len(vss))
	for i, j := range idx {
		sorted[i] = vss[j]
	}
	copy(vss, sorted)
}

// SortReals orders reals by endpoint (ip:port), in place when they are not
// in order already.
func SortReals(rs []Real) {
	byEndpoint := func(a, b Real) int { return a.Endpoint().Compare(b.Endpoint()) }
	if !slices.IsSortedFunc(rs, byEndpoint) {
		slices.SortFunc(rs, byEndpoint)
	}
}

// VIPs returns the distinct VIPs of the state, sorted.
func (s *State) VIPs() []netip.Addr {
	seen := map[netip.Addr]bool{}
	for _, vs := range s.Services {
		seen[vs.VIP] = true
	}
	return slices.SortedFunc(maps.Keys(seen), netip.Addr.Compare)
}

// Clone returns a deep copy, so a reconciler can keep what it applied while
// the caller goes on mutating its own state.
func (s State) Clone() State {
	out := State{Services: make([]VirtualService, len(s.Services))}
	for i, vs := range s.Services {
		vs.Reals = slices.Clone(vs.Reals)
		vs.Health.ExpectedStatus = slices.Clone(vs.Health.ExpectedStatus)
		vs.BGP.Communities = slices.Clone(vs.BGP.Communities)
		vs.BGP.LargeCommunities = slices.Clone(vs.BGP.LargeCommunities)
		if vs.BGP.LocalPref != nil {
			lp := *vs.BGP.LocalPref
			vs.BGP.LocalPref = &lp
		}
		out.Services[i] = vs
	}
	return out
}
