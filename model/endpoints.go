package model

import "net/netip"

// ServiceEndpoints is what the translation needs to know of a Service and its
// EndpointSlices, in plain Go so that it stays testable without Kubernetes.
type ServiceEndpoints struct {
	Ports     []ServicePort
	Endpoints []Endpoint
}

// ServicePort is one port of the Service.
type ServicePort struct {
	Name     string
	Port     int32
	Protocol string // TCP | UDP | SCTP
}

// Endpoint is one address of an EndpointSlice with its conditions.
type Endpoint struct {
	IP netip.Addr
	// Ready, Serving and Terminating are the EndpointSlice conditions.
	Ready       bool
	Serving     bool
	Terminating bool
	// Ports maps an EndpointSlice port name ("" for an unnamed port) to the
	// pod's port number.
	Ports map[string]int32
}

// EndpointsLookup returns the endpoints of Service name in namespace ns, and
// false when the Service is unknown.
type EndpointsLookup func(ns, name string) (ServiceEndpoints, bool)

// NoEndpoints is the lookup for sources that know no Services (standalone
// mode): every service-form LBRoute has no reals.
func NoEndpoints(string, string) (ServiceEndpoints, bool) { return ServiceEndpoints{}, false }
