package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Protocol is the L4 protocol of a port.
// +kubebuilder:validation:Enum=TCP;UDP;""
type Protocol string

// Policy is the load-balancing method: rr (round robin), wrr (weighted round
// robin), random, sh (source-IP hash).
// +kubebuilder:validation:Enum=rr;wrr;random;sh;""
type Policy string

// HealthCheckType selects the active probe.
// +kubebuilder:validation:Enum=TCP;HTTP;None;""
type HealthCheckType string

// (CEL rules in these markers test for "" with size(): gofmt rewrites two
// single quotes in a doc comment into a typographic quote.)
//
// The rule on LBRoute below: the default vsName is <namespace>-<name>, at
// most 63 characters. CEL sees metadata.name but not metadata.namespace, so
// the rule refuses only the names too long for any namespace; the agent
// checks the full length.

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
// +kubebuilder:validation:XValidation:rule="(has(self.spec.vsName) && size(self.spec.vsName) > 0) || size(self.metadata.name) <= 61",message="metadata.name is too long for the default vsName <namespace>-<name> (at most 63 characters): set spec.vsName",fieldPath=".spec.vsName"
type LBRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   LBRouteSpec   `json:"spec"`
	Status LBRouteStatus `json:"status,omitempty"`
}

// The rules below are the static ones package translate enforces too, so
// that `kubectl apply` and `edgeagent validate` agree;
// translate/testdata/parity is the corpus that proves it against a real
// apiserver.

// LBRouteSpec is what the user asks for. The apiserver checks every rule the
// agent does except those that need the agent's configuration (vipPools) or
// other LBRoutes (conflicts). An empty string in an optional field means
// "unset", as in the core Kubernetes API.
//
// +kubebuilder:validation:XValidation:rule="has(self.service) != has(self.realServers)",message="exactly one of service or realServers must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.realServers) || !isIP(self.vsIP) || self.realServers.all(r, !isIP(r.ip) || ip(r.ip).family() == ip(self.vsIP).family())",message="every real server must be of the IP family of vsIP",fieldPath=".realServers"
// +kubebuilder:validation:XValidation:rule="has(self.service) || self.ports.all(p, !has(p.targetPort) || type(p.targetPort) == int || p.targetPort.matches('^[0-9]+$'))",message="a named targetPort needs spec.service; with realServers use a number",fieldPath=".ports"
type LBRouteSpec struct {
	// VSName is the APV virtual service name; default <namespace>-<name>.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([A-Za-z0-9][A-Za-z0-9_.-]*)?$`
	// +optional
	VSName string `json:"vsName,omitempty"`

	// VSIP is the virtual IP (IPv4 or IPv6): a unicast address, not
	// unspecified, loopback, multicast, link-local or broadcast. It must lie
	// in one of the agent's vipPools that admits this namespace.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address (no zone, no IPv4-mapped IPv6, no leading zeros)"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || ip(self).isGlobalUnicast()",message="must be a unicast address a VIP can use (not unspecified, loopback, multicast, link-local or broadcast)"
	VSIP string `json:"vsIP"`

	// Ports: one virtual service per entry, unique per (port, protocol).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(p, self.exists_one(q, q.port == p.port && (has(q.protocol) && size(q.protocol) > 0 ? q.protocol : 'TCP') == (has(p.protocol) && size(p.protocol) > 0 ? p.protocol : 'TCP')))",message="ports must be unique per protocol"
	// +listType=atomic
	Ports []LBRoutePort `json:"ports"`

	// Policy is the load-balancing method; default rr.
	// +kubebuilder:default=rr
	// +optional
	Policy Policy `json:"policy,omitempty"`

	// Group is the real-service group name; default vsName.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([A-Za-z0-9][A-Za-z0-9_.-]*)?$`
	// +optional
	Group string `json:"group,omitempty"`

	// Service takes the reals from the ready endpoints of a Service in the
	// same namespace. Exactly one of service and realServers is set.
	// +optional
	Service *ServiceRef `json:"service,omitempty"`

	// Uniqueness of the reals in O(n): transformMapEntry fails on a key it
	// has already inserted, and the apiserver's error names that key.
	// Comparing pairs would cost 1024² steps, over the apiserver's CEL budget
	// for one call. (string(int) in a concatenation is costed as unbounded,
	// format is not.)

	// RealServers is a static list of reals, unique per (ip, port).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:XValidation:rule="size(self.transformMapEntry(i, r, {'%s/%d'.format([isIP(r.ip) ? string(ip(r.ip)) : r.ip, has(r.port) ? r.port : 0]): i})) == size(self)",message="real servers must be unique per ip and port"
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

	// TargetPort is the real-server port: a number 1-65535 (also written as
	// a string, "8080"), or the name of a port of the referenced Service
	// (an IANA service name: at most 15 lowercase letters, digits and '-',
	// with at least one letter). Default: port.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : (self.matches('^[0-9]+$') ? (size(self) <= 5 && int(self) >= 1 && int(self) <= 65535) : (self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.matches('[a-z]') && !self.contains('--')))",message="must be a port number 1-65535 or an IANA service name (at most 15 lowercase letters, digits and '-', with a letter)"
	// +optional
	TargetPort *intstr.IntOrString `json:"targetPort,omitempty"`
}

// ServiceRef names a Service in the LBRoute's namespace.
type ServiceRef struct {
	// Name is a DNS-1035 label, as Service names are.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// RealServer is one static real.
type RealServer struct {
	// IP is the real's address, of the same family as vsIP; not
	// unspecified, loopback or multicast.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address (no zone, no IPv4-mapped IPv6, no leading zeros)"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !(ip(self).isUnspecified() || ip(self).isLoopback() || cidr('224.0.0.0/4').containsIP(self) || cidr('ff00::/8').containsIP(self))",message="cannot be a real server (unspecified, loopback or multicast)"
	IP string `json:"ip"`

	// Port overrides the port's targetPort for this real.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port *int32 `json:"port,omitempty"`

	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=1
	// +optional
	Weight *int32 `json:"weight,omitempty"`
}

// HealthCheck describes the active probe of each real.
//
// +kubebuilder:validation:XValidation:rule="!has(self.timeoutSeconds) || !has(self.intervalSeconds) || self.timeoutSeconds <= self.intervalSeconds",message="timeoutSeconds must not exceed intervalSeconds",fieldPath=".timeoutSeconds"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'HTTP') || ((!has(self.path) || size(self.path) == 0) && (!has(self.host) || size(self.host) == 0) && !has(self.expectedStatus))",message="path, host and expectedStatus apply only to type HTTP",fieldPath=".type"
type HealthCheck struct {
	// +kubebuilder:default=TCP
	// +optional
	Type HealthCheckType `json:"type,omitempty"`

	// IntervalSeconds between probes; default 5.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	IntervalSeconds *int32 `json:"intervalSeconds,omitempty"`

	// TimeoutSeconds of one probe, at most intervalSeconds; default 2.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`

	// RiseCount: consecutive successes that bring a real back; default 2.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	RiseCount *int32 `json:"riseCount,omitempty"`

	// FallCount: consecutive failures that take a real out; default 3.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	FallCount *int32 `json:"fallCount,omitempty"`

	// Path is the HTTP GET path; default "/". URL characters only (no
	// spaces, quotes or control characters).
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^(/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$`
	// +optional
	Path string `json:"path,omitempty"`

	// Host is the HTTP Host header; default the real's address.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([A-Za-z0-9]([A-Za-z0-9.:\[\]-]*[A-Za-z0-9\]])?)?$`
	// +optional
	Host string `json:"host,omitempty"`

	// ExpectedStatus is a status code (200) or a list of codes and ranges
	// ("200-299,301"), each within 100-599. Default 200-399.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 100 && self <= 599) : (self.split(',').all(p, p.trim().matches('^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$') && (!p.contains('-') || p.trim().split('-')[0] <= p.trim().split('-')[1])))",message="must be a status code 100-599 or a list of codes and ranges such as \"200-299,301\""
	// +optional
	ExpectedStatus *intstr.IntOrString `json:"expectedStatus,omitempty"`
}

// BGPAdvertisement sets attributes on the VIP's BGP announcement.
type BGPAdvertisement struct {
	// Communities: "ASN:VALUE" (each 0-65535) or well-known names
	// (no-export, no-advertise, no-export-subconfed, no-peer).
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=19
	// +kubebuilder:validation:items:XValidation:rule="self.lowerAscii() in ['no-export', 'no-advertise', 'no-export-subconfed', 'no-peer'] || (self.matches('^(0|[1-9][0-9]{0,4}):(0|[1-9][0-9]{0,4})$') && self.split(':').all(n, int(n) <= 65535))",message="must be ASN:VALUE (each 0-65535) or a well-known community"
	// +listType=atomic
	// +optional
	Communities []string `json:"communities,omitempty"`

	// LargeCommunities: "ASN:X:Y" (RFC 8092), each 0-4294967295.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^(0|[1-9][0-9]{0,9}):(0|[1-9][0-9]{0,9}):(0|[1-9][0-9]{0,9})$') && self.split(':').all(n, int(n) <= 4294967295)",message="must be ASN:X:Y (each 0-4294967295)"
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
	// Conditions is an atomic list, not a map keyed by type as
	// metav1.Condition lists often are: the leader is its one writer, with
	// an update that keeps any other condition it finds, and a map makes
	// the apiserver track every field of every condition in managedFields
	// (a quarter of the object; at 10,000 routes × 3 nodes ~18 % of the
	// apiserver's CPU per status write; docs/benchmarks/kube.md, fifth pass).

	// Conditions: Accepted, Programmed, Advertised, Ready. Programmed and
	// Advertised count the edge nodes ("programmed on 4 of 5 nodes"). Ready
	// is True when the route is accepted, has endpoints, and at least one
	// node serves it: programmed there with a healthy real, and advertised
	// by that node if it runs BGP (a node with bgp.enabled false serves
	// what it programs).
	// +listType=atomic
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
