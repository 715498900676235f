package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Protocol is the L4 protocol of a port.
// +kubebuilder:validation:Enum=TCP;UDP
type Protocol string

// Policy is the load-balancing method: rr (round robin), wrr (weighted round
// robin), random, sh (source-IP hash).
// +kubebuilder:validation:Enum=rr;wrr;random;sh
type Policy string

// HealthCheckType selects the active probe.
// +kubebuilder:validation:Enum=TCP;HTTP;None
type HealthCheckType string

// LBRoute publishes a set of real servers behind a virtual IP on the edge
// nodes and, when configured, on the APV appliance.
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lbr,categories=edgeagent
// +kubebuilder:printcolumn:name="VS",type=string,JSONPath=`.status.vsName`
// +kubebuilder:printcolumn:name="VIP",type=string,JSONPath=`.spec.vsIP`
// +kubebuilder:printcolumn:name="PORTS",type=string,JSONPath=`.status.ports`
// +kubebuilder:printcolumn:name="GROUP",type=string,JSONPath=`.status.group`
// +kubebuilder:printcolumn:name="RS",type=integer,JSONPath=`.status.realServers`
// +kubebuilder:printcolumn:name="POLICY",type=string,JSONPath=`.spec.policy`
// +kubebuilder:printcolumn:name="READY",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type LBRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   LBRouteSpec   `json:"spec"`
	Status LBRouteStatus `json:"status,omitempty"`
}

// LBRouteSpec is what the user asks for.
//
// +kubebuilder:validation:XValidation:rule="has(self.service) != has(self.realServers)",message="exactly one of service or realServers must be set"
type LBRouteSpec struct {
	// VSName is the APV virtual service name; default <namespace>-<name>.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	VSName string `json:"vsName,omitempty"`

	// VSIP is the virtual IP (IPv4 or IPv6). It must lie in one of the
	// agent's vipPools that admits this namespace.
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	// +kubebuilder:validation:MaxLength=45
	VSIP string `json:"vsIP"`

	// Ports: one virtual service per entry.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))",message="ports must be unique per protocol"
	// +listType=atomic
	Ports []LBRoutePort `json:"ports"`

	// Policy is the load-balancing method; default rr.
	// +kubebuilder:default=rr
	// +optional
	Policy Policy `json:"policy,omitempty"`

	// Group is the real-service group name; default vsName.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	Group string `json:"group,omitempty"`

	// Service takes the reals from the ready endpoints of a Service in the
	// same namespace. Exactly one of service and realServers is set.
	// +optional
	Service *ServiceRef `json:"service,omitempty"`

	// RealServers is a static list of reals.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +listType=atomic
	// +optional
	RealServers []RealServer `json:"realServers,omitempty"`

	// HealthCheck probes each real from the edge node; default TCP connect.
	// +optional
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`

	// BGP sets attributes on the VIP's announcement.
	// +optional
	BGP *BGPAdvertisement `json:"bgp,omitempty"`
}

// LBRoutePort is one frontend port and where it goes on the reals.
type LBRoutePort struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// +kubebuilder:default=TCP
	// +optional
	Protocol Protocol `json:"protocol,omitempty"`

	// TargetPort is the real-server port: a number, or the name of a port of
	// the referenced Service. Default: port.
	// +kubebuilder:validation:XIntOrString
	// +optional
	TargetPort *intstr.IntOrString `json:"targetPort,omitempty"`
}

// ServiceRef names a Service in the LBRoute's namespace.
type ServiceRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}

// RealServer is one static real.
type RealServer struct {
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	// +kubebuilder:validation:MaxLength=45
	IP string `json:"ip"`

	// Port overrides the port's targetPort for this real.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=1
	// +optional
	Weight *int32 `json:"weight,omitempty"`
}

// HealthCheck describes the active probe of each real.
//
// +kubebuilder:validation:XValidation:rule="!has(self.timeoutSeconds) || !has(self.intervalSeconds) || self.timeoutSeconds <= self.intervalSeconds",message="timeoutSeconds must not exceed intervalSeconds"
type HealthCheck struct {
	// +kubebuilder:default=TCP
	// +optional
	Type HealthCheckType `json:"type,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	IntervalSeconds int32 `json:"intervalSeconds,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	RiseCount int32 `json:"riseCount,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	FallCount int32 `json:"fallCount,omitempty"`

	// Path is the HTTP GET path; default "/".
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	Path string `json:"path,omitempty"`

	// Host is the HTTP Host header; default the real's address.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Host string `json:"host,omitempty"`

	// ExpectedStatus is a status code (200) or a list of codes and ranges
	// ("200-299,301"). Default 200-399.
	// +kubebuilder:validation:XIntOrString
	// +optional
	ExpectedStatus *intstr.IntOrString `json:"expectedStatus,omitempty"`
}

// BGPAdvertisement sets attributes on the VIP's BGP announcement.
type BGPAdvertisement struct {
	// Communities: "ASN:VALUE" or well-known names (no-export, no-advertise,
	// no-export-subconfed, no-peer).
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Communities []string `json:"communities,omitempty"`

	// LargeCommunities: "ASN:X:Y" (RFC 8092).
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	LargeCommunities []string `json:"largeCommunities,omitempty"`

	// LocalPref for iBGP peers; default 100.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	// +optional
	LocalPref *int64 `json:"localPref,omitempty"`
}

// LBRouteStatus is what the agents observed and did. The leader (the
// holder of the agents' Lease) writes all of it, folded from every edge
// node's LBRouteReports, so the object does not grow with the number of
// edge nodes.
type LBRouteStatus struct {
	// Conditions: Accepted, Programmed, Advertised, Ready. Programmed and
	// Advertised count the edge nodes ("programmed on 4 of 5 nodes"). Ready
	// is True when the route is accepted, has endpoints, and at least one
	// node serves it: programmed there with a healthy real, and advertised
	// by that node if it runs BGP (a node with bgp.enabled false serves
	// what it programs).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Nodes lists the edge nodes that do not fully serve the route (not
	// programmed, not advertised although they run BGP, a real failing its
	// health check, or a problem on that node), at most 8, by name; the
	// conditions count every node, and `kubectl get lbrr` has each node's
	// view of every route.
	// +listType=map
	// +listMapKey=node
	// +optional
	Nodes []NodeStatus `json:"nodes,omitempty"`

	// VSName and Group are the resolved names (defaults applied).
	// +optional
	VSName string `json:"vsName,omitempty"`
	// +optional
	Group string `json:"group,omitempty"`
	// Ports is a summary such as "80/TCP,443/TCP".
	// +optional
	Ports string `json:"ports,omitempty"`
	// RealServers is the number of reals known for the route.
	// +optional
	RealServers int32 `json:"realServers,omitempty"`
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// NodeStatus is one edge node's view of the route.
type NodeStatus struct {
	// Node is the edge node's name.
	Node string `json:"node"`
	// Programmed: the VIP and its rules are in this node's kernel.
	Programmed bool `json:"programmed"`
	// Advertised: this node announces the VIP over BGP.
	Advertised bool `json:"advertised"`
	// HealthyReals is the number of reals passing health checks.
	HealthyReals int32 `json:"healthyReals"`
	// Reals is the number of candidate reals.
	Reals int32 `json:"reals"`
	// Message says what is wrong on this node.
	// +optional
	Message string `json:"message,omitempty"`
	// LastTransitionTime is when the node was first listed here.
	// +optional
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
}

// LBRouteList is a list of LBRoutes.
//
// +kubebuilder:object:root=true
type LBRouteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LBRoute `json:"items"`
}
