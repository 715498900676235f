package watcher

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
