package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// LBRouteReport is one edge node's report on a slice of the LBRoutes: for
// every route of the slice, whether the node programmed and advertised it
// and how many of its reals pass their health checks.
//
// Each agent writes only its own reports, with server-side apply (field
// manager edgeagent-node-<node>); a node's routes are spread over Slices
// objects named <node>-<slice> (a route's slice is the FNV-1a hash of
// "namespace/name" modulo Slices), so an object holds a few hundred routes
// however many there are, and a change to one route rewrites one object.
// The leader folds every node's reports into the LBRoutes' conditions.
// Reports carry the label apv.arraynetworks.com/node and are owned by the
// Node, so they are deleted with it.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=lbrr,categories=edgeagent
// +kubebuilder:printcolumn:name="NODE",type=string,JSONPath=`.node`
// +kubebuilder:printcolumn:name="SLICE",type=integer,JSONPath=`.slice`
// +kubebuilder:printcolumn:name="OF",type=integer,JSONPath=`.slices`
// +kubebuilder:printcolumn:name="ROUTES",type=integer,JSONPath=`.summary.routes`
// +kubebuilder:printcolumn:name="PROGRAMMED",type=integer,JSONPath=`.summary.programmed`
// +kubebuilder:printcolumn:name="FAILING",type=integer,JSONPath=`.summary.failing`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type LBRouteReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Node is the edge node whose agent writes this report.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// Slice is this object's index, from 0 to Slices-1.
	// +kubebuilder:validation:Minimum=0
	Slice int32 `json:"slice"`
	// Slices is how many objects the node's report is spread over. 0 means
	// the agent runs but has not finished its first reconcile: it has
	// nothing to report yet, and the leader waits for it a little before
	// counting it as not programmed.
	// +kubebuilder:validation:Minimum=0
	Slices int32 `json:"slices"`
	// Advertises is true when the node runs BGP (bgp.enabled): a route it
	// serves must then also be advertised by it.
	Advertises bool `json:"advertises"`
	// Heartbeat is set only while Slices is 0: when the starting agent last
	// said it is still at its first reconcile (it refreshes it every 15
	// seconds). The leader keeps waiting for a node it hears from this way,
	// up to five minutes after the node appeared, instead of writing every
	// route once without the node and once more with it.
	// +optional
	Heartbeat *metav1.Time `json:"heartbeat,omitempty"`
	// Summary counts the routes of this slice.
	// +optional
	Summary LBRouteReportSummary `json:"summary,omitzero"`
	// Routes, sorted by namespace and name.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4096
	// +optional
	Routes []ReportedRoute `json:"routes,omitempty"`
}

// LBRouteReportSummary counts a report's routes, for `kubectl get lbrr`.
type LBRouteReportSummary struct {
	// Routes is the number of routes in this slice.
	Routes int32 `json:"routes"`
	// Programmed is how many of them are in the node's kernel.
	Programmed int32 `json:"programmed"`
	// Failing is how many are not fully served by this node: not
	// programmed, not advertised although the node runs BGP, a real failing
	// its health check, or a problem reported.
	Failing int32 `json:"failing"`
}

// ReportedRoute is one LBRoute as one node sees it.
type ReportedRoute struct {
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Generation is the LBRoute's metadata.generation this entry describes.
	Generation int64 `json:"generation"`
	// Programmed: the VIP and its rules are in this node's kernel.
	// +optional
	Programmed bool `json:"programmed,omitempty"`
	// Advertised: this node announces the VIP over BGP.
	// +optional
	Advertised bool `json:"advertised,omitempty"`
	// Reals is the number of candidate reals; HealthyReals how many pass
	// their health checks.
	// +optional
	Reals int32 `json:"reals,omitempty"`
	// +optional
	HealthyReals int32 `json:"healthyReals,omitempty"`
	// Message says what is wrong on this node, if anything (the route is
	// rejected here, or the dataplane refused one of its services).
	// +kubebuilder:validation:MaxLength=300
	// +optional
	Message string `json:"message,omitempty"`
}

// LBRouteReportList is a list of LBRouteReports.
//
// +kubebuilder:object:root=true
type LBRouteReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LBRouteReport `json:"items"`
}
