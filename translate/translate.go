// Package translate turns LBRoute objects (plus, for the service form, the
// Service's endpoints) into the desired state of package model, and validates
// them: every static rule of the CRD (so that standalone mode and `edgeagent
// validate` refuse what the apiserver refuses, testdata/parity proves it),
// and what the CRD cannot see: VIP pools, conflicts between routes and the
// length of a vsName defaulted from the namespace. It is pure: callers bring
// the objects, it returns values.
package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

// Result is the verdict on one LBRoute.
type Result struct {
	Namespace, Name string
	// Generation is the route's metadata.generation translated.
	Generation int64
	// Accepted is false when the route was refused; Problems says why.
	Accepted bool
	Problems model.Problems
	// Services are the virtual services the route produced (nil when refused).
	Services []model.VirtualService
	// ServiceFound is false for a service-form route whose Service is unknown.
	ServiceFound bool

	resourceVersion string // of the object translated (Memo)
}

// Key is "namespace/name".
func (r Result) Key() string { return r.Namespace + "/" + r.Name }

// Options are the agent-wide inputs to translation.
type Options struct {
	Pools     []model.Pool
	Endpoints model.EndpointsLookup
	// Memo, when set, carries translations from one Build to the next;
	// the results and the state then share their reals with it, so callers
	// must not modify them (the prober marks health on a copy).
	Memo *Memo
}

// Memo remembers each route's translation between Builds, so that a change
// to one route among thousands translates that route only. An entry is
// reused only for the very object it was made from (the informer replaces an
// object on every update and never modifies one) at the same
// resourceVersion and generation, and only for the static form: a
// service-form route also depends on its Service's endpoints, which change
// without the route. Entries of routes gone are dropped by the next Build.
// A Memo belongs to one caller at a time, and its Options (pools) must not
// change between Builds.
type Memo struct {
	byRoute map[*v1alpha1.LBRoute]*Result // never modified once stored
}

// NewMemo returns an empty memo.
func NewMemo() *Memo { return &Memo{byRoute: map[*v1alpha1.LBRoute]*Result{}} }

// route translates rt, from the memo when it can.
func (m *Memo) route(rt *v1alpha1.LBRoute, opts Options, next map[*v1alpha1.LBRoute]*Result) Result {
	if m == nil || rt.Spec.Service != nil {
		return Route(rt, opts)
	}
	res, ok := m.byRoute[rt]
	if !ok || res.Generation != rt.Generation || res.resourceVersion != rt.ResourceVersion {
		r := Route(rt, opts)
		res = &r
	}
	next[rt] = res
	return *res
}

// Build translates every route and resolves conflicts: when two routes claim
// the same (VIP, port, protocol), the older one keeps it and the newer is
// refused with reason VIPConflict. Age is the creation timestamp, then
// namespace/name, so every agent reaches the same verdict.
func Build(routes []*v1alpha1.LBRoute, opts Options) (model.State, []Result) {
	if opts.Endpoints == nil {
		opts.Endpoints = model.NoEndpoints
	}
	sorted := slices.Clone(routes)
	// namespace/name is unique, so an unstable sort gives the one order.
	slices.SortFunc(sorted, func(a, b *v1alpha1.LBRoute) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})

	var next map[*v1alpha1.LBRoute]*Result
	if opts.Memo != nil {
		next = make(map[*v1alpha1.LBRoute]*Result, len(sorted))
	}
	results := make([]Result, 0, len(sorted))
	n := 0
	for _, rt := range sorted {
		res := opts.Memo.route(rt, opts, next)
		n += len(res.Services)
		results = append(results, res)
	}
	// Conflicts, in age order; owner holds the index of the result that
	// has each frontend.
	owner := make(map[model.Frontend]int, n)
	state := model.State{Services: make([]model.VirtualService, 0, n)}
	for i := range results {
		res := &results[i]
		if !res.Accepted {
			continue
		}
		var conflicts model.Problems
		for _, vs := range res.Services {
			if o, taken := owner[vs.Frontend()]; taken {
				conflicts = append(conflicts, model.Problem{
					Field:  "spec.vsIP",
					Reason: model.ReasonVIPConflict,
					Detail: fmt.Sprintf("%s is already used by LBRoute %s", vs.Frontend(), results[o].Key()),
				})
			}
		}
		if len(conflicts) > 0 {
			res.Accepted, res.Problems, res.Services = false, conflicts, nil
			continue
		}
		for _, vs := range res.Services {
			owner[vs.Frontend()] = i
		}
		state.Services = append(state.Services, res.Services...)
	}
	if opts.Memo != nil {
		opts.Memo.byRoute = next
	}
	state.Sort()
	sortResults(results)
	return state, results
}

// sortResults orders results by key ("namespace/name"), making each key once.
func sortResults(rs []Result) {
	keys := make([]string, len(rs))
	idx := make([]int, len(rs))
	for i := range rs {
		keys[i], idx[i] = rs[i].Key(), i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	sorted := make([]Result, len(rs))
	for i, j := range idx {
		sorted[i] = rs[j]
	}
	copy(rs, sorted)
}

// Route validates and translates one LBRoute on its own (no conflict check).
// Each service's reals are in endpoint order.
func Route(rt *v1alpha1.LBRoute, opts Options) Result {
	if opts.Endpoints == nil {
		opts.Endpoints = model.NoEndpoints
	}
	res := Result{Namespace: rt.Namespace, Name: rt.Name, Generation: rt.Generation, resourceVersion: rt.ResourceVersion}
	v := validator{}
	spec := &rt.Spec

	v.objectMeta(rt)
	vip := v.vip(spec.VSIP, rt.Namespace, opts.Pools)
	vsName := spec.VSName
	if vsName == "" {
		vsName = rt.Namespace + "-" + rt.Name
		v.apvName("spec.vsName", vsName, "defaulted from <namespace>-<name>; set spec.vsName")
	} else {
		v.apvName("spec.vsName", vsName, "")
	}
	if spec.Group != "" {
		v.apvName("spec.group", spec.Group, "")
	}
	group := cmp.Or(spec.Group, vsName)
	policy := v.policy(spec.Policy)
	health := v.health(spec.HealthCheck)
	adv := v.bgp(spec.BGP)
	ports := v.ports(spec.Ports, spec.Service != nil)

	switch {
	case spec.Service != nil && spec.RealServers != nil:
		v.add("spec", model.ReasonInvalidSpec, "exactly one of service or realServers must be set, not both")
	case spec.Service == nil && spec.RealServers == nil:
		v.add("spec", model.ReasonInvalidSpec, "exactly one of service or realServers must be set")
	case spec.Service != nil:
		if errs := validation.IsDNS1035Label(spec.Service.Name); len(errs) > 0 {
			v.add("spec.service.name", model.ReasonInvalidSpec, "must be a DNS-1035 label, as Service names are: %s", strings.Join(errs, "; "))
		}
	default:
		v.realServers(spec.RealServers, vip)
	}

	if len(v.problems) > 0 {
		res.Problems = v.problems
		return res
	}

	res.Accepted = true
	var sep model.ServiceEndpoints
	if spec.Service != nil {
		sep, res.ServiceFound = opts.Endpoints(rt.Namespace, spec.Service.Name)
	}
	for _, p := range ports {
		vs := model.VirtualService{
			Namespace: rt.Namespace, Route: rt.Name,
			Name: vsName, Group: group,
			VIP: vip, Port: p.port, Protocol: p.protocol, Policy: policy,
			Health: health, BGP: adv,
		}
		if spec.Service != nil {
			vs.Reals = serviceReals(sep, p, vip)
		} else {
			vs.Reals = staticReals(spec.RealServers, p)
		}
		model.SortReals(vs.Reals)
		res.Services = append(res.Services, vs)
	}
	return res
}

// port is a validated spec.ports entry.
type port struct {
	port       uint16
	protocol   model.Protocol
	targetNum  uint16 // 0 when unset or named
	targetName string
}

func staticReals(rs []v1alpha1.RealServer, p port) []model.Real {
	out := make([]model.Real, 0, len(rs))
	for _, r := range rs {
		ip, _ := netip.ParseAddr(r.IP)
		pt := cmp.Or(p.targetNum, p.port)
		if r.Port != nil {
			pt = uint16(*r.Port)
		}
		out = append(out, model.Real{IP: ip, Port: pt, Weight: uint32(ptr.Deref(r.Weight, 1)), Healthy: true})
	}
	slices.SortFunc(out, func(a, b model.Real) int { return a.Endpoint().Compare(b.Endpoint()) })
	return out
}

// serviceReals picks the endpoints that may take traffic: ready ones, plus
// terminating-but-serving ones marked Terminating so the dataplane drains
// them. Endpoints of the other IP family than the VIP are skipped: the kernel
// cannot DNAT across families.
func serviceReals(sep model.ServiceEndpoints, p port, vip netip.Addr) []model.Real {
	name, num := resolveTargetPort(sep, p)
	seen := map[netip.AddrPort]bool{}
	var out []model.Real
	for _, ep := range sep.Endpoints {
		ip := ep.IP.Unmap()
		if !ip.IsValid() || ip.Is4() != vip.Is4() {
			continue
		}
		var terminating bool
		switch {
		case ep.Ready && !ep.Terminating:
		case ep.Serving && ep.Terminating:
			terminating = true
		default:
			continue
		}
		pt := num
		if name != "" || pt == 0 {
			n, ok := ep.Ports[name]
			if !ok || n <= 0 || n > 65535 {
				continue
			}
			pt = uint16(n)
		}
		ap := netip.AddrPortFrom(ip, pt)
		if seen[ap] {
			continue
		}
		seen[ap] = true
		out = append(out, model.Real{IP: ip, Port: pt, Weight: 1, Healthy: true, Terminating: terminating})
	}
	slices.SortFunc(out, func(a, b model.Real) int { return a.Endpoint().Compare(b.Endpoint()) })
	return out
}

// resolveTargetPort returns either an EndpointSlice port name to look up per
// endpoint, or a fixed number. A numeric targetPort is the pod port; a name
// is a Service port name; with none, the Service port equal to the LBRoute
// port (same protocol) is used, and failing that the port number itself.
func resolveTargetPort(sep model.ServiceEndpoints, p port) (string, uint16) {
	if p.targetNum != 0 {
		return "", p.targetNum
	}
	if p.targetName != "" {
		return p.targetName, 0
	}
	for _, sp := range sep.Ports {
		if sp.Port == int32(p.port) && strings.EqualFold(cmp.Or(sp.Protocol, "TCP"), string(p.protocol)) {
			return sp.Name, 0
		}
	}
	if len(sep.Ports) == 1 {
		return sep.Ports[0].Name, 0
	}
	return "", p.port
}
