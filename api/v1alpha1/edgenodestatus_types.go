package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// EdgeNodeStatus is one edge node's BGP sessions, as its agent sees them:
// one cluster-scoped object per node, named after the node, written only by
// that node's agent (in the spirit of Calico's CalicoNodeStatus and FRR-K8s'
// BGPSessionState). Writes are rate-limited and skipped when nothing but
// counters moved within the interval; agents can be configured not to write
// it at all.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ens,categories=edgeagent
// +kubebuilder:printcolumn:name="PEERS",type=integer,JSONPath=`.status.peers`
// +kubebuilder:printcolumn:name="ESTABLISHED",type=integer,JSONPath=`.status.established`
// +kubebuilder:printcolumn:name="UPDATED",type=date,JSONPath=`.status.lastUpdated`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type EdgeNodeStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status EdgeNodeState `json:"status,omitempty"`
}

// EdgeNodeState is the node's BGP view.
type EdgeNodeState struct {
	// Neighbors is every configured or discovered BGP peer.
	// +listType=map
	// +listMapKey=address
	// +optional
	Neighbors []BGPNeighborStatus `json:"neighbors,omitempty"`
	// Peers is the number of neighbors; Established how many are up.
	Peers       int32 `json:"peers"`
	Established int32 `json:"established"`
	// LastUpdated is when the agent last wrote this object.
	// +optional
	LastUpdated metav1.Time `json:"lastUpdated,omitempty"`
}

// BGPNeighborStatus is one BGP session.
type BGPNeighborStatus struct {
	Address string `json:"address"`
	ASN     int64  `json:"asn"`
	// State uses GoBGP's words in lower case: idle, connect, active,
	// opensent, openconfirm, established.
	State string `json:"state"`
	// EstablishedSince is when the session came up (absent when down).
	// +optional
	EstablishedSince *metav1.Time `json:"establishedSince,omitempty"`
	// Received, Accepted and Advertised count prefixes.
	// +optional
	Received int32 `json:"received,omitempty"`
	// +optional
	Accepted int32 `json:"accepted,omitempty"`
	// +optional
	Advertised int32 `json:"advertised,omitempty"`
	// +optional
	LocalAddress string `json:"localAddress,omitempty"`
	// +optional
	GracefulRestart bool `json:"gracefulRestart,omitempty"`
	// LastError says why the session is down.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// Source is "config" or "node/<name>".
	// +optional
	Source string `json:"source,omitempty"`
}

// EdgeNodeStatusList is a list of EdgeNodeStatus.
//
// +kubebuilder:object:root=true
type EdgeNodeStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EdgeNodeStatus `json:"items"`
}
