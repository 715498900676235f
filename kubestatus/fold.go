package kubestatus

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons written to LBRoute status (besides the
// rejection reasons of package model).
const (
	ConditionAccepted   = "Accepted"
	ConditionProgrammed = "Programmed"
	ConditionAdvertised = "Advertised"
	ConditionReady      = "Ready"

	ReasonAccepted       = "Accepted"
	ReasonProgrammed     = "Programmed"
	ReasonNotProgrammed  = "NotProgrammed"
	ReasonAdvertised     = "Advertised"
	ReasonNotAdvertised  = "NotAdvertised"
	ReasonBGPDisabled    = "BGPDisabled"
	ReasonReady          = "Ready"
	ReasonRejected       = "Rejected"
	ReasonNoEndpoints    = model.ReasonNoEndpoints
	ReasonNoHealthyReals = "NoHealthyReals"
)

// MaxListedNodes bounds status.nodes: the nodes that do not fully serve a
// route are listed up to this many, so an LBRoute's size does not grow
// with the cluster.
const MaxListedNodes = 8

// Verdict is what the leader's own translation says of a route.
type Verdict struct {
	Accepted bool
	// Reason and Message say why a route is rejected.
	Reason, Message string
	// ServiceForm routes take their reals from a Service; ServiceFound
	// says whether it exists.
	ServiceForm, ServiceFound bool
	VSName, Group, Ports      string
	Reals                     int32
}

// NodeView is one node's report on one route, as the leader folds it.
type NodeView struct {
	Node string
	// Advertises: the node runs BGP.
	Advertises bool
	// Pending: the node's agent runs but has not reported yet.
	Pending bool
	// Entry is the node's entry for the route; nil when it has none.
	Entry *v1alpha1.ReportedRoute
}

// current reports whether the entry describes the route's current spec.
func (n NodeView) current(generation int64) bool {
	return n.Entry != nil && n.Entry.Generation >= generation
}

// Fold computes the status the leader writes for rt from its own verdict
// and every node's view (one per node, in any order). Transition times are
// kept from rt's current status where nothing changed, so folding the same
// input twice gives the same status.
func Fold(rt *v1alpha1.LBRoute, v Verdict, nodes []NodeView, now metav1.Time) v1alpha1.LBRouteStatus {
	gen := rt.Generation
	total := len(nodes)
	var programmed, advertised, healthy, serving, bgp int
	for _, n := range nodes {
		if n.Advertises {
			bgp++
		}
		if !n.current(gen) {
			continue
		}
		e := n.Entry
		if e.Programmed {
			programmed++
			if e.HealthyReals > 0 {
				healthy++
			}
		}
		if e.Advertised {
			advertised++
		}
		if Serves(*e, n.Advertises) {
			serving++
		}
	}

	conds := slices.Clone(rt.Status.Conditions)
	set := func(typ string, ok bool, reason, msg string) {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&conds, metav1.Condition{
			Type: typ, Status: st, Reason: reason, Message: msg,
			ObservedGeneration: gen, LastTransitionTime: now,
		})
	}
	out := v1alpha1.LBRouteStatus{
		VSName: v.VSName, Group: v.Group, Ports: v.Ports, RealServers: v.Reals,
		ObservedGeneration: gen,
	}
	if !v.Accepted {
		set(ConditionAccepted, false, v.Reason, v.Message)
		set(ConditionProgrammed, false, ReasonRejected, "the route was rejected")
		set(ConditionAdvertised, false, ReasonRejected, "the route was rejected")
		set(ConditionReady, false, ReasonRejected, "the route was rejected")
		out.Conditions = conds
		return out
	}
	set(ConditionAccepted, true, ReasonAccepted, "the route is valid and its VIP is allowed")
	if programmed > 0 {
		set(ConditionProgrammed, true, ReasonProgrammed, fmt.Sprintf("programmed on %d of %d nodes", programmed, total))
	} else {
		set(ConditionProgrammed, false, ReasonNotProgrammed, fmt.Sprintf("programmed on none of %d nodes", total))
	}
	switch {
	case total > 0 && bgp == 0:
		set(ConditionAdvertised, false, ReasonBGPDisabled, "no edge node runs BGP (bgp.enabled: false)")
	case advertised > 0:
		set(ConditionAdvertised, true, ReasonAdvertised, fmt.Sprintf("advertised by %d of %d nodes", advertised, total))
	default:
		set(ConditionAdvertised, false, ReasonNotAdvertised, fmt.Sprintf("advertised by none of %d nodes", total))
	}
	switch {
	case v.ServiceForm && !v.ServiceFound:
		set(ConditionReady, false, ReasonNoEndpoints, fmt.Sprintf("Service %q not found", serviceName(rt)))
	case v.Reals == 0:
		set(ConditionReady, false, ReasonNoEndpoints, "the route has no ready endpoints")
	case programmed == 0:
		set(ConditionReady, false, ReasonNotProgrammed, fmt.Sprintf("programmed on none of %d nodes", total))
	case healthy == 0:
		set(ConditionReady, false, ReasonNoHealthyReals, "no real server passes its health check")
	case serving == 0:
		set(ConditionReady, false, ReasonNotAdvertised, "no node that programmed it advertises the VIP")
	default:
		set(ConditionReady, true, ReasonReady, fmt.Sprintf("serving from %d of %d nodes", serving, total))
	}
	out.Conditions = conds
	out.Nodes = listed(rt, nodes, now)
	return out
}

func serviceName(rt *v1alpha1.LBRoute) string {
	if rt.Spec.Service == nil {
		return ""
	}
	return rt.Spec.Service.Name
}

// listed is status.nodes: the nodes that do not fully serve the route,
// those that do not serve it at all first, at most MaxListedNodes.
func listed(rt *v1alpha1.LBRoute, nodes []NodeView, now metav1.Time) []v1alpha1.NodeStatus {
	type item struct {
		serves bool
		st     v1alpha1.NodeStatus
	}
	var items []item
	for _, n := range nodes {
		st := v1alpha1.NodeStatus{Node: n.Node}
		serves := false
		switch {
		case n.Pending:
			st.Message = "the agent is starting: no report yet"
		case n.Entry == nil:
			st.Message = "no report on this route yet"
		default:
			e := n.Entry
			st.Programmed, st.Advertised = e.Programmed, e.Advertised
			st.Reals, st.HealthyReals = e.Reals, e.HealthyReals
			st.Message = e.Message
			if !n.current(rt.Generation) {
				st.Programmed, st.Advertised = false, false
				st.Message = fmt.Sprintf("has not programmed generation %d yet (reports %d)", rt.Generation, e.Generation)
			} else if !failing(*e, n.Advertises) {
				continue
			}
			serves = n.current(rt.Generation) && Serves(*e, n.Advertises)
			if st.Message == "" {
				st.Message = problem(*e, n.Advertises)
			}
		}
		items = append(items, item{serves: serves, st: st})
	}
	slices.SortFunc(items, func(a, b item) int {
		if a.serves != b.serves {
			if a.serves {
				return 1
			}
			return -1
		}
		return strings.Compare(a.st.Node, b.st.Node)
	})
	if len(items) > MaxListedNodes {
		items = items[:MaxListedNodes]
	}
	if len(items) == 0 {
		return nil
	}
	out := make([]v1alpha1.NodeStatus, len(items))
	for i, it := range items {
		out[i] = it.st
		out[i].LastTransitionTime = now
		for _, old := range rt.Status.Nodes {
			if old.Node == it.st.Node && !old.LastTransitionTime.IsZero() {
				out[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	slices.SortFunc(out, func(a, b v1alpha1.NodeStatus) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// problem words what is short of full service in an entry without a
// message of its own.
func problem(e v1alpha1.ReportedRoute, advertises bool) string {
	switch {
	case !e.Programmed:
		return "not programmed"
	case e.Reals == 0:
		return "no reals"
	case e.HealthyReals == 0:
		return "no real passes its health check"
	case advertises && !e.Advertised:
		return "not advertised"
	case e.HealthyReals < e.Reals:
		return fmt.Sprintf("%d of %d reals pass their health check", e.HealthyReals, e.Reals)
	}
	return ""
}

// SameStatus compares what the leader writes, ignoring transition times
// (Fold keeps them when nothing changed).
func SameStatus(cur, want *v1alpha1.LBRouteStatus) bool {
	if cur.VSName != want.VSName || cur.Group != want.Group || cur.Ports != want.Ports ||
		cur.RealServers != want.RealServers || cur.ObservedGeneration != want.ObservedGeneration ||
		len(cur.Conditions) != len(want.Conditions) || len(cur.Nodes) != len(want.Nodes) {
		return false
	}
	for _, c := range want.Conditions {
		o := meta.FindStatusCondition(cur.Conditions, c.Type)
		if o == nil || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || o.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	for i := range want.Nodes {
		a, b := cur.Nodes[i], want.Nodes[i]
		a.LastTransitionTime, b.LastTransitionTime = metav1.Time{}, metav1.Time{}
		if a != b {
			return false
		}
	}
	return true
}

// byNode orders node views by name, for deterministic folding.
func byNode(a, b NodeView) int { return cmp.Compare(a.Node, b.Node) }
