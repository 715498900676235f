// Package status defines the agent's status document, served as JSON on the
// admin address (GET /status) and printed by `edgeagent status`. Field names
// are a user contract (DESIGN.md): extend, never rename.
package status

import "time"

// Report is the whole /status document.
type Report struct {
	Node    string    `json:"node"`
	Version string    `json:"version"`
	Mode    string    `json:"mode"` // "standalone" or "kubernetes"
	Time    time.Time `json:"time"`
	Ready   bool      `json:"ready"`
	// Degraded lists why /readyz is not fully healthy (apiserver gone, a
	// failing reconciler, ...). Empty when all is well.
	Degraded []string `json:"degraded,omitempty"`

	Neighbors       []Neighbor       `json:"neighbors"`
	VirtualServices []VirtualService `json:"virtualServices"`
	APIServer       APIServer        `json:"apiserver"`

	// LBRoutes is the verdict on every LBRoute seen.
	LBRoutes []LBRoute `json:"lbroutes"`
	// SourceErrors are files (standalone) or objects that could not be read.
	SourceErrors []SourceError `json:"sourceErrors,omitempty"`
	Dataplane    *Dataplane    `json:"dataplane,omitempty"`
	// LearnedRoutes are the routes BGP installed in the kernel.
	LearnedRoutes []LearnedRoute `json:"learnedRoutes,omitempty"`
	APV           []APVDevice    `json:"apv,omitempty"`
	// APVEvents is the CloudEvents sink of the APV scan, when configured.
	APVEvents *APVEvents `json:"apvEvents,omitempty"`
	// HealthCheck is the health-check engine; absent when the agent runs
	// none.
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
}

// HealthCheck says whether the health-check engine probes reals. While it
// does not, reals keep their last verdict (new reals are presumed
// healthy), the agent is not ready, and Degraded says why.
type HealthCheck struct {
	Running bool `json:"running"`
	// Error says why the engine could not start or stopped.
	Error string `json:"error,omitempty"`
	// Since is when the engine started, or failed.
	Since time.Time `json:"since,omitzero"`
}

// Neighbor is one BGP session. State uses GoBGP's words in lower case
// (idle, connect, active, opensent, openconfirm, established).
type Neighbor struct {
	Address       string `json:"address"`
	ASN           uint32 `json:"asn"`
	State         string `json:"state"`
	UptimeSeconds int64  `json:"uptimeSeconds"`
	Received      int    `json:"received"`
	Advertised    int    `json:"advertised"`
	// Accepted is how many received prefixes passed importCIDRs.
	Accepted        int    `json:"accepted"`
	LocalAddress    string `json:"localAddress,omitempty"`
	GracefulRestart bool   `json:"gracefulRestart"`
	// LastError says why the session is down (notification, TCP error).
	LastError string `json:"lastError,omitempty"`
	// Source is "config" or "node/<name>".
	Source string `json:"source,omitempty"`
}

// VirtualService is one (VIP, port, protocol) and its reals.
type VirtualService struct {
	Key        string `json:"key"`
	Name       string `json:"name"`
	Group      string `json:"group,omitempty"`
	VIP        string `json:"vip"`
	Port       uint16 `json:"port"`
	Protocol   string `json:"protocol"`
	Policy     string `json:"policy"`
	Reals      []Real `json:"reals"`
	Programmed bool   `json:"programmed"`
	Advertised bool   `json:"advertised"`
	// HealthCheck summarises the probe ("TCP every 5s").
	HealthCheck string `json:"healthCheck,omitempty"`
	// Error says why the service is not programmed, when the dataplane
	// refused it (address family unsupported, port taken, ...).
	Error string `json:"error,omitempty"`
}

// Real is one real server.
type Real struct {
	IP          string `json:"ip"`
	Port        uint16 `json:"port"`
	Weight      uint32 `json:"weight"`
	Healthy     bool   `json:"healthy"`
	Terminating bool   `json:"terminating,omitempty"`
	// LastResult is the last probe's outcome ("ok", or the error).
	LastResult string    `json:"lastResult,omitempty"`
	Since      time.Time `json:"since,omitzero"`
}

// APIServer is the state of the Kubernetes connection.
type APIServer struct {
	Connected  bool  `json:"connected"`
	Reconnects int64 `json:"reconnects"`
	// LastEventAgeSeconds is the time since the last watch event or
	// successful list; -1 when none yet.
	LastEventAgeSeconds float64 `json:"lastEventAgeSeconds"`
	Error               string  `json:"error,omitempty"`
}

// LBRoute is the verdict on one LBRoute.
type LBRoute struct {
	Key      string    `json:"key"`
	Accepted bool      `json:"accepted"`
	Reason   string    `json:"reason,omitempty"`
	Problems []Problem `json:"problems,omitempty"`
	Services int       `json:"services"`
}

// Problem is one field-level problem.
type Problem struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// SourceError is a file or object that could not be decoded.
type SourceError struct {
	Source string `json:"source"`
	Error  string `json:"error"`
}

// Dataplane is the kernel side.
type Dataplane struct {
	Interface     string            `json:"interface"`
	InterfaceKind string            `json:"interfaceKind"` // dummy or bridge
	Masquerade    bool              `json:"masquerade"`
	Sysctls       map[string]string `json:"sysctls,omitempty"`
	Rules         int               `json:"rules"`
	LastSync      time.Time         `json:"lastSync,omitzero"`
	LastError     string            `json:"lastError,omitempty"`
	// Backend is the rules backend in use (dataplane.backend: iptables or
	// nftables); NFTablesTable its table, for nftables.
	Backend       string `json:"backend,omitempty"`
	NFTablesTable string `json:"nftablesTable,omitempty"`
	// Warnings are conditions that keep traffic from flowing which the
	// agent does not fix (a foreign forward-hook chain with policy drop),
	// and leftovers of the backend not in use that could not be removed.
	Warnings []string `json:"warnings,omitempty"`
	// IPTablesMode is the iptables backend in use (nft or legacy), and
	// IPTablesModeReason why it was chosen (detected or configured).
	IPTablesMode       string `json:"iptablesMode,omitempty"`
	IPTablesModeReason string `json:"iptablesModeReason,omitempty"`
	// Failures are the steps of the sync that fail now; FailingSince is
	// when the oldest of them started failing (zero: none fails). The
	// agent is not ready once it has failed for longer than
	// dataplane.failureGracePeriod.
	Failures     []DataplaneFailure `json:"failures,omitempty"`
	FailingSince time.Time          `json:"failingSince,omitzero"`
}

// DataplaneFailure is one step of the dataplane sync that fails.
type DataplaneFailure struct {
	// Step is interface, addresses, sysctl, iptables-ipv4 or iptables-ipv6.
	Step  string    `json:"step"`
	Error string    `json:"error"`
	Since time.Time `json:"since"`
}

// LearnedRoute is a BGP route installed in the kernel.
type LearnedRoute struct {
	Prefix   string   `json:"prefix"`
	NextHops []string `json:"nextHops"`
	// Metric is the route's kernel metric (bgp.importMetric).
	Metric uint32 `json:"metric"`
	// ShadowedBy names another routing daemon's route to the same prefix
	// that the kernel prefers (lower metric), e.g. "bird metric 32 via
	// 10.99.0.11": the agent's route is only a fallback while it exists.
	ShadowedBy string `json:"shadowedBy,omitempty"`
}

// APVDevice is one appliance's sync and scan state.
type APVDevice struct {
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Up        bool      `json:"up"`
	HAState   string    `json:"haState,omitempty"`
	LastSync  time.Time `json:"lastSync,omitzero"`
	LastScan  time.Time `json:"lastScan,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	InSync    bool      `json:"inSync"`
	// HAUnit is the device's own unit in its HA configuration, as the agent
	// identified it (empty when HA is not configured or the unit is not
	// known; the HA state is then "unknown" rather than the peer's).
	HAUnit string `json:"haUnit,omitempty"`
	// NormalizesDifferently lists the objects ("health ea_h_...") the
	// device prints back differently from how they were sent; the agent
	// stopped rewriting them until they or the LBRoutes change.
	NormalizesDifferently []string `json:"normalizesDifferently,omitempty"`
}

// APVEvents reports the CloudEvents sink of the APV scan.
type APVEvents struct {
	SinkURL   string `json:"sinkURL"`
	Queued    int    `json:"queued"`
	Delivered uint64 `json:"delivered"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
	LastError string `json:"lastError,omitempty"`
}
