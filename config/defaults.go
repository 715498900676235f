package config

import "time"

// The defaults of every configuration field, in one place: ApplyDefaults
// fills them in, the flags of cmd/edgeagent show them in --help (a test
// there fails if a flag's default and the configuration's disagree), and
// the packages that take these settings (bgp, dataplane, apv) use them for
// a zero field, so a library caller and the agent get the same behaviour.
const (
	DefaultASN                = 64512
	DefaultBGPPort            = 179
	DefaultRestartTime        = 120 * time.Second
	DefaultImportMetric       = 1024
	DefaultPeerHoldTime       = 90 * time.Second
	DefaultVIPInterface       = "edge-vip0"
	DefaultResyncInterval     = 5 * time.Minute
	DefaultIPTablesMode       = "auto"
	DefaultBackend            = "iptables"
	DefaultFailureGracePeriod = 30 * time.Second
	// DefaultReadIdleTimeout and DefaultPingTimeout apply unless kubelet's
	// HTTP2_READ_IDLE_TIMEOUT_SECONDS / HTTP2_PING_TIMEOUT_SECONDS are set.
	DefaultReadIdleTimeout        = 10 * time.Second
	DefaultPingTimeout            = 5 * time.Second
	DefaultAPIServerCompression   = false
	DefaultNamespace              = "edgeagent-system"
	DefaultNeighborStatusInterval = 30 * time.Second
	// DefaultStatusQPS and DefaultStatusBurst: a fresh install writes every
	// LBRoute's status once, and at 200 per second that write, not the
	// apiserver, was what a fresh 5,000-route install waited for (25 s of
	// it). The shipped FlowSchema and PriorityLevelConfiguration queue what
	// the apiserver cannot take at once, so this limit only bounds a
	// runaway agent (docs/benchmarks/kube.md, "Seventh pass").
	DefaultStatusQPS         = 500
	DefaultStatusBurst       = 1000
	DefaultHealthHoldTime    = 10 * time.Second
	DefaultHealthConcurrency = 256
	DefaultAPVSyncInterval   = 30 * time.Second
	DefaultAPVScanInterval   = 60 * time.Second
	DefaultAPVEventQueueSize = 1000
	DefaultAPVEventTimeout   = 5 * time.Second
	DefaultAPVEventRetries   = 3
	DefaultMetricsAddress    = ":9560"
	DefaultAdminAddress      = "127.0.0.1:9561"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "text"
)
