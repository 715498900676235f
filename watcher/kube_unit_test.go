package watcher

import (
	"fmt"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestSliceEndpointsConditionDefaults(t *testing.T) {
	es := &discoveryv1.EndpointSlice{
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}, {Port: ptr.To[int32](9090)}, {Name: ptr.To("noport")}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.1"}}, // all unset: ready, serving, not terminating
			{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
			{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}, // serving defaults to ready
			{Addresses: []string{"not-an-ip"}},
		},
	}
	got := SliceEndpoints(es)
	want := []string{
		"10.0.0.1 ready=true serving=true terminating=false ports=map[:9090 http:8080]",
		"10.0.0.2 ready=false serving=true terminating=true ports=map[:9090 http:8080]",
		"10.0.0.3 ready=false serving=false terminating=false ports=map[:9090 http:8080]",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d endpoints, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		s := fmt.Sprintf("%s ready=%v serving=%v terminating=%v ports=%v", e.IP, e.Ready, e.Serving, e.Terminating, e.Ports)
		if s != want[i] {
			t.Errorf("endpoint %d: %s, want %s", i, s, want[i])
		}
	}
	if fq := SliceEndpoints(&discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeFQDN, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"a.example"}}}}); fq != nil {
		t.Errorf("FQDN slice produced endpoints: %+v", fq)
	}
}

func TestNodePeersOf(t *testing.T) {
	for _, c := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{CalicoIPv4Annotation: "10.0.0.5/24"}, "[{n 10.0.0.5}]"},
		{map[string]string{CalicoIPv4Annotation: "10.0.0.5"}, "[{n 10.0.0.5}]"},
		{map[string]string{CalicoIPv4Annotation: "10.0.0.5/24", CalicoIPv6Annotation: "fd00::5/64"}, "[{n 10.0.0.5} {n fd00::5}]"},
		{map[string]string{CalicoIPv4Annotation: "garbage"}, "[]"},
		{nil, "[]"},
	} {
		got := fmt.Sprint(NodePeersOf(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: c.ann}}))
		if got != c.want {
			t.Errorf("%v: %s, want %s", c.ann, got, c.want)
		}
	}
}

func TestLeaderStatusAggregation(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Hour))
	accepted := routeVerdict{accepted: true, vsName: "ns-r", group: "ns-r", ports: "80/TCP", reals: 2}
	node := func(name string, prog, adv bool, healthy int32) v1alpha1.NodeStatus {
		return v1alpha1.NodeStatus{Node: name, Programmed: prog, Advertised: adv, Reals: 2, HealthyReals: healthy}
	}
	for _, c := range []struct {
		name   string
		v      routeVerdict
		others []v1alpha1.NodeStatus
		mine   v1alpha1.NodeStatus
		want   string // Accepted Programmed Advertised Ready
	}{
		{"all good", accepted, nil, node("a", true, true, 2), "True/Accepted True/Programmed True/Advertised True/Ready"},
		{"rejected", routeVerdict{reason: "VIPNotAllowed", message: "spec.vsIP: ..."}, nil, node("a", false, false, 0),
			"False/VIPNotAllowed False/Rejected False/Rejected False/Rejected"},
		{"another node serves", accepted, []v1alpha1.NodeStatus{node("b", true, true, 1)}, node("a", false, false, 0),
			"True/Accepted True/Programmed True/Advertised True/Ready"},
		{"no node advertises", accepted, []v1alpha1.NodeStatus{node("b", true, false, 2)}, node("a", true, false, 2),
			"True/Accepted True/Programmed False/NotAdvertised False/NotAdvertised"},
		{"no healthy real", accepted, nil, node("a", true, true, 0), "True/Accepted True/Programmed True/Advertised False/NoHealthyReals"},
		{"no endpoints", routeVerdict{accepted: true, reals: 0}, nil, node("a", true, true, 0), "True/Accepted True/Programmed True/Advertised False/NoEndpoints"},
		{"service missing", routeVerdict{accepted: true, serviceForm: true}, nil, node("a", true, true, 0), "True/Accepted True/Programmed True/Advertised False/NoEndpoints"},
	} {
		rt := &v1alpha1.LBRoute{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", Generation: 3},
			Spec:   v1alpha1.LBRouteSpec{Service: &v1alpha1.ServiceRef{Name: "svc"}},
			Status: v1alpha1.LBRouteStatus{Nodes: c.others}}
		st := LeaderStatus(rt, c.v, c.mine, t0)
		var got []string
		for _, typ := range []string{ConditionAccepted, ConditionProgrammed, ConditionAdvertised, ConditionReady} {
			got = append(got, condition(&v1alpha1.LBRoute{Status: st}, typ))
		}
		if s := fmt.Sprint(got); s != "["+c.want+"]" {
			t.Errorf("%s: %s, want [%s]", c.name, s, c.want)
		}
		if st.ObservedGeneration != 3 {
			t.Errorf("%s: observedGeneration %d", c.name, st.ObservedGeneration)
		}
		// Recomputing with the result in place keeps transition times and
		// compares equal: the no-op check holds.
		rt.Status.Conditions = st.Conditions
		rt.Status.VSName, rt.Status.Group, rt.Status.Ports, rt.Status.RealServers, rt.Status.ObservedGeneration = st.VSName, st.Group, st.Ports, st.RealServers, st.ObservedGeneration
		again := LeaderStatus(rt, c.v, c.mine, t1)
		if !sameLeaderStatus(&rt.Status, again) {
			t.Errorf("%s: recomputed status differs", c.name)
		}
		if c := meta.FindStatusCondition(again.Conditions, ConditionReady); !c.LastTransitionTime.Equal(&t0) {
			t.Errorf("transition time moved without a transition: %v", c.LastTransitionTime)
		}
	}
}
