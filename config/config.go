// Package config loads the agent's configuration file (the contract in
// DESIGN.md), applies defaults and validates it. Flags are applied on top by
// cmd/edgeagent; this package knows nothing of them.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/arraynetworks/edgeagent/model"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Duration is a time.Duration written as "90s" in the file.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts "90s" style strings, or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration must be a string such as \"90s\"")
		}
		d.Duration = time.Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Config is the whole agent configuration.
type Config struct {
	NodeName       string      `json:"nodeName,omitempty"`
	Source         Source      `json:"source"`
	VIPPools       []VIPPool   `json:"vipPools,omitempty"`
	BGP            BGP         `json:"bgp"`
	Dataplane      Dataplane   `json:"dataplane"`
	APIServer      APIServer   `json:"apiserver"`
	APV            APV         `json:"apv"`
	HealthCheck    HealthCheck `json:"healthCheck"`
	MetricsAddress string      `json:"metricsAddress,omitempty"`
	AdminAddress   string      `json:"adminAddress,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`
	// LogFormat is text or json.
	LogFormat string `json:"logFormat,omitempty"`
	// Kubernetes tunes the cluster side (unused in standalone mode).
	Kubernetes Kubernetes `json:"kubernetes"`

	// baseDir resolves relative paths: the config file's directory.
	baseDir string
	// file is the config file's absolute path ("" without one).
	file string
}

// Source says where LBRoutes come from.
type Source struct {
	// Kubeconfig: "" means in-cluster (unless Dir is set).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Dir is a directory of LBRoute YAML (standalone mode).
	Dir string `json:"dir,omitempty"`
}

// VIPPool is one allowed VIP range.
type VIPPool struct {
	CIDR       string   `json:"cidr"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// Kubernetes tunes what the agent does in a cluster besides watching.
type Kubernetes struct {
	// Namespace holds the leader-election Lease; default $POD_NAMESPACE,
	// then "edgeagent-system".
	Namespace string `json:"namespace,omitempty"`
	// AutoLBRoute runs the (leader-elected) controller that creates
	// LBRoutes for LoadBalancer Services in namespaces labelled
	// need-auto-LBRoute=true. Default true.
	AutoLBRoute *bool `json:"autoLBRoute,omitempty"`
	// NeighborStatus writes this node's BGP sessions into a cluster-scoped
	// EdgeNodeStatus object. Default true.
	NeighborStatus *bool `json:"neighborStatus,omitempty"`
	// NeighborStatusInterval is the least time between two EdgeNodeStatus
	// writes. Default 30s.
	NeighborStatusInterval Duration `json:"neighborStatusInterval,omitzero"`
	// StatusQPS and StatusBurst bound the agent's status writes (its
	// LBRouteReports; while it leads, LBRoute status). Defaults 500 and
	// 1000: a fresh install writes every LBRoute once, and the shipped
	// FlowSchema makes the apiserver queue what it cannot take at once.
	StatusQPS   float64 `json:"statusQPS,omitempty"`
	StatusBurst int     `json:"statusBurst,omitempty"`
}

// BGP configures the embedded BGP speaker.
type BGP struct {
	Enabled         *bool           `json:"enabled,omitempty"`
	ASN             uint32          `json:"asn,omitempty"`
	RouterID        string          `json:"routerID,omitempty"`
	ListenPort      int32           `json:"listenPort,omitempty"`
	ListenAddresses []string        `json:"listenAddresses,omitempty"`
	Peers           []Peer          `json:"peers,omitempty"`
	GracefulRestart GracefulRestart `json:"gracefulRestart"`
	ImportRoutes    *bool           `json:"importRoutes,omitempty"`
	ImportCIDRs     []string        `json:"importCIDRs,omitempty"`
	// ImportMetric is the kernel metric of learned routes; default 1024,
	// above BIRD's 32 and zebra's 20, so a route another routing daemon on
	// the node installed for the same prefix (calico-node's BIRD through
	// an IPIP or VXLAN tunnel) keeps precedence and the agent's is the
	// fallback. It must differ from every other daemon's metric: the
	// kernel keys routes by prefix and metric, not by protocol.
	ImportMetric uint32 `json:"importMetric,omitempty"`
	// WithdrawOnExit withdraws every VIP before the agent stops (node drain)
	// instead of relying on graceful restart.
	WithdrawOnExit bool `json:"withdrawOnExit,omitempty"`
	// NodePeers peers with Kubernetes Nodes matching the label selector, at
	// their Calico address annotation.
	NodePeers *NodePeers `json:"nodePeers,omitempty"`
}

// Peer is one configured BGP neighbor.
type Peer struct {
	Address       string   `json:"address"`
	ASN           uint32   `json:"asn,omitempty"`
	Port          uint16   `json:"port,omitempty"`
	Password      string   `json:"password,omitempty"`
	PasswordFile  string   `json:"passwordFile,omitempty"`
	HoldTime      Duration `json:"holdTime,omitzero"`
	KeepaliveTime Duration `json:"keepaliveTime,omitzero"`
	Passive       bool     `json:"passive,omitempty"`
	// LocalAddress is the source address of the session.
	LocalAddress string `json:"localAddress,omitempty"`
}

// NodePeers discovers peers from Kubernetes Nodes.
type NodePeers struct {
	LabelSelector string `json:"labelSelector"`
	ASN           uint32 `json:"asn,omitempty"`
}

// GracefulRestart configures RFC 4724.
type GracefulRestart struct {
	Enabled     *bool    `json:"enabled,omitempty"`
	RestartTime Duration `json:"restartTime,omitzero"`
}

// Dataplane configures the kernel side.
type Dataplane struct {
	VIPInterface string `json:"vipInterface,omitempty"`
	Masquerade   *bool  `json:"masquerade,omitempty"`
	// ResyncInterval is how often the dataplane re-reads the kernel to
	// repair rules or addresses removed behind its back; 0 = default 5m,
	// negative = never.
	ResyncInterval Duration `json:"resyncInterval,omitzero"`
	// Backend is the rules backend: iptables (default; EDGE- chains
	// through iptables-restore) or nftables (the table inet edgeagent, a
	// data-only layout written by netlink: one change among 10,000
	// services costs a few element writes instead of an iptables-nft
	// transaction's ~100 ms). Restarting the agent with the other value
	// moves the node over; see docs/dataplane.md.
	Backend string `json:"backend,omitempty" jsonschema:"enum=iptables,enum=nftables"`
	// IPTablesMode is the iptables backend: auto (default) picks the one
	// the node already uses (kubelet's chains, then the one holding more
	// rules); nft or legacy force it.
	IPTablesMode string `json:"iptablesMode,omitempty"`
	// FailureGracePeriod is how long a dataplane sync may keep failing
	// before the agent reports itself not ready (/readyz); 0 = default
	// 30s. Short failures (a busy xtables lock) stay invisible to the
	// kubelet; a node that cannot program its VIPs does not.
	FailureGracePeriod Duration `json:"failureGracePeriod,omitzero"`
}

// APIServer configures the apiserver connection: its health checking and
// compression.
type APIServer struct {
	ReadIdleTimeout *Duration `json:"readIdleTimeout,omitempty"`
	PingTimeout     *Duration `json:"pingTimeout,omitempty"`
	// Compression asks the apiserver to gzip its responses. Default false,
	// as kube-controller-manager and kube-scheduler do: the apiserver
	// compresses a watch for each watcher separately, and every agent
	// watches every LBRoute, so at thousands of routes gzip is CPU on the
	// apiserver and on every agent for bytes a cluster network carries
	// cheaply (docs/benchmarks/kube.md). True for edge nodes behind a thin
	// link. A kubeconfig's disable-compression: true wins.
	Compression *bool `json:"compression,omitempty"`
}

// HealthCheck configures the real-server prober.
type HealthCheck struct {
	// HoldTime is the least time between two changes of a VIP's
	// announcement caused by health (flap damping); 0 = default 10s,
	// negative = no damping.
	HoldTime Duration `json:"holdTime,omitzero"`
	// Concurrency bounds probes in flight.
	Concurrency int `json:"concurrency,omitempty"`
}

// APV configures the appliances the agent drives.
type APV struct {
	Devices      []APVDevice `json:"devices,omitempty"`
	SyncInterval Duration    `json:"syncInterval,omitzero"`
	ScanInterval Duration    `json:"scanInterval,omitzero"`
	// Events sends scan findings to a CloudEvents sink (a Knative broker,
	// say); off unless sinkURL is set.
	Events APVEvents `json:"events,omitzero"`
}

// APVDevice is one appliance.
type APVDevice struct {
	Name string `json:"name"`
	// URL is the management base URL; only https:// is accepted (the
	// credentials travel in every request).
	URL          string `json:"url"`
	UsernameFile string `json:"usernameFile,omitempty"`
	PasswordFile string `json:"passwordFile,omitempty"`
	// ScanUsernameFile and ScanPasswordFile, when set, hold a separate
	// (read-only) account used for scans; syncs keep using the account
	// above. Both or neither.
	ScanUsernameFile string `json:"scanUsernameFile,omitempty"`
	ScanPasswordFile string `json:"scanPasswordFile,omitempty"`
	CAFile           string `json:"caFile,omitempty"`
	// ServerName is the name the device's certificate is verified against
	// (and sent as SNI) when it differs from the URL's host, typically a
	// certificate issued to a host name while the URL holds an address.
	ServerName string `json:"serverName,omitempty"`
	// PinnedCertSHA256 is the SHA-256 fingerprint of the device's own
	// certificate (hex, colons allowed: the output of `openssl x509
	// -noout -fingerprint -sha256`). Set, it replaces chain verification:
	// the device must present exactly that certificate. For self-signed
	// device certificates.
	PinnedCertSHA256 string `json:"pinnedCertSHA256,omitempty"`
	// InsecureSkipVerify turns TLS verification off (lab use only).
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
	// HAUnit names this device's own unit in its HA configuration
	// (`ha unit "<name>" ...`). Empty: the unit whose address is one of the
	// device's own (`show ip address`) or the URL's host.
	HAUnit string `json:"haUnit,omitempty"`
}

// APVEvents configures the CloudEvents sink of the APV scan.
type APVEvents struct {
	// SinkURL receives one CloudEvent per device state change (HTTP
	// binding, structured by the CloudEvents Go SDK); empty: off.
	SinkURL string `json:"sinkURL,omitempty"`
	// QueueSize bounds the events waiting for delivery (default 1000);
	// when it is full new events are dropped and counted, never waited for.
	QueueSize int `json:"queueSize,omitempty"`
	// Timeout bounds one delivery attempt (default 5s).
	Timeout Duration `json:"timeout,omitzero"`
	// Retries is how often a failed delivery is tried again (default 3,
	// backing off 1s, 2s, 4s ...; negative: never).
	Retries int `json:"retries,omitempty"`
}

// NormalizeFingerprint turns a SHA-256 certificate fingerprint in hex (any
// case, optionally with ':' between bytes) into 64 lower-case hex digits.
func NormalizeFingerprint(s string) (string, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits, colons allowed)", s)
	}
	return h, nil
}

// Load reads a config file, applies defaults and validates it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	c.baseDir = abs
	c.file, _ = filepath.Abs(path)
	return c, nil
}

// Parse decodes a config document strictly: an unknown field is an error, so
// a typo never silently falls back to a default.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return c, nil
}

// File is the absolute path of the file the config was loaded from.
func (c *Config) File() string { return c.file }

// Default returns an empty configuration (flags only).
func Default() *Config { return &Config{} }

// Resolve makes a path from the config file relative to the file's directory.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.baseDir == "" {
		return p
	}
	return filepath.Join(c.baseDir, p)
}

// ApplyDefaults fills in every unset field. nodeName falls back to
// $NODE_NAME, then the host name.
func (c *Config) ApplyDefaults() {
	t := true
	if c.NodeName == "" {
		c.NodeName = os.Getenv("NODE_NAME")
	}
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.BGP.Enabled == nil {
		c.BGP.Enabled = &t
	}
	if c.BGP.ASN == 0 {
		c.BGP.ASN = DefaultASN
	}
	if c.BGP.ListenPort == 0 {
		c.BGP.ListenPort = DefaultBGPPort
	}
	if c.BGP.GracefulRestart.Enabled == nil {
		c.BGP.GracefulRestart.Enabled = &t
	}
	if c.BGP.GracefulRestart.RestartTime.Duration == 0 {
		c.BGP.GracefulRestart.RestartTime.Duration = DefaultRestartTime
	}
	if c.BGP.ImportRoutes == nil {
		c.BGP.ImportRoutes = &t
	}
	if c.BGP.ImportMetric == 0 {
		c.BGP.ImportMetric = DefaultImportMetric
	}
	for i := range c.BGP.Peers {
		p := &c.BGP.Peers[i]
		if p.ASN == 0 {
			p.ASN = c.BGP.ASN
		}
		if p.Port == 0 {
			p.Port = DefaultBGPPort
		}
		if p.HoldTime.Duration == 0 {
			p.HoldTime.Duration = DefaultPeerHoldTime
		}
		if p.KeepaliveTime.Duration == 0 {
			p.KeepaliveTime.Duration = p.HoldTime.Duration / 3
		}
	}
	if c.Dataplane.VIPInterface == "" {
		c.Dataplane.VIPInterface = DefaultVIPInterface
	}
	if c.Dataplane.Masquerade == nil {
		c.Dataplane.Masquerade = &t
	}
	if c.Dataplane.ResyncInterval.Duration == 0 {
		c.Dataplane.ResyncInterval.Duration = DefaultResyncInterval
	}
	if c.Dataplane.IPTablesMode == "" {
		c.Dataplane.IPTablesMode = DefaultIPTablesMode
	}
	if c.Dataplane.Backend == "" {
		c.Dataplane.Backend = DefaultBackend
	}
	if c.Dataplane.FailureGracePeriod.Duration == 0 {
		c.Dataplane.FailureGracePeriod.Duration = DefaultFailureGracePeriod
	}
	if c.APIServer.ReadIdleTimeout == nil {
		c.APIServer.ReadIdleTimeout = &Duration{envSeconds("HTTP2_READ_IDLE_TIMEOUT_SECONDS", DefaultReadIdleTimeout)}
	}
	if c.APIServer.PingTimeout == nil {
		c.APIServer.PingTimeout = &Duration{envSeconds("HTTP2_PING_TIMEOUT_SECONDS", DefaultPingTimeout)}
	}
	if c.APIServer.Compression == nil {
		compression := DefaultAPIServerCompression
		c.APIServer.Compression = &compression
	}
	if c.Kubernetes.Namespace == "" {
		c.Kubernetes.Namespace = os.Getenv("POD_NAMESPACE")
	}
	if c.Kubernetes.Namespace == "" {
		c.Kubernetes.Namespace = DefaultNamespace
	}
	if c.Kubernetes.AutoLBRoute == nil {
		c.Kubernetes.AutoLBRoute = &t
	}
	if c.Kubernetes.NeighborStatus == nil {
		c.Kubernetes.NeighborStatus = &t
	}
	if c.Kubernetes.NeighborStatusInterval.Duration == 0 {
		c.Kubernetes.NeighborStatusInterval.Duration = DefaultNeighborStatusInterval
	}
	if c.Kubernetes.StatusQPS == 0 {
		c.Kubernetes.StatusQPS = DefaultStatusQPS
	}
	if c.Kubernetes.StatusBurst == 0 {
		c.Kubernetes.StatusBurst = DefaultStatusBurst
	}
	if c.HealthCheck.HoldTime.Duration == 0 {
		c.HealthCheck.HoldTime.Duration = DefaultHealthHoldTime
	}
	if c.HealthCheck.Concurrency == 0 {
		c.HealthCheck.Concurrency = DefaultHealthConcurrency
	}
	if c.APV.SyncInterval.Duration == 0 {
		c.APV.SyncInterval.Duration = DefaultAPVSyncInterval
	}
	if c.APV.ScanInterval.Duration == 0 {
		c.APV.ScanInterval.Duration = DefaultAPVScanInterval
	}
	if c.APV.Events.QueueSize == 0 {
		c.APV.Events.QueueSize = DefaultAPVEventQueueSize
	}
	if c.APV.Events.Timeout.Duration == 0 {
		c.APV.Events.Timeout.Duration = DefaultAPVEventTimeout
	}
	if c.APV.Events.Retries == 0 {
		c.APV.Events.Retries = DefaultAPVEventRetries
	}
	if c.MetricsAddress == "" {
		c.MetricsAddress = DefaultMetricsAddress
	}
	if c.AdminAddress == "" {
		c.AdminAddress = DefaultAdminAddress
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.LogFormat == "" {
		c.LogFormat = DefaultLogFormat
	}
}

// envSeconds reads a whole number of seconds from an environment variable,
// the form kubelet's HTTP2_* variables use.
func envSeconds(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil || n < 0 {
		return def
	}
	return time.Duration(n) * time.Second
}

// Validate checks the configuration (after defaults) and returns every
// problem found, each naming its field.
func (c *Config) Validate() error {
	var p problems
	c.validateNode(&p)
	c.validateBGP(&p)
	c.validateDataplane(&p)
	c.validateKubernetes(&p)
	c.validateAPV(&p)
	c.validateLogging(&p)
	return errors.Join(p...)
}

// problems collects what Validate finds, each error naming its field.
type problems []error

func (p *problems) bad(field, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (c *Config) validateNode(probs *problems) {
	bad := probs.bad
	if c.NodeName == "" {
		bad("nodeName", "must be set (or NODE_NAME, or a host name)")
	} else if errs := validation.IsDNS1123Subdomain(c.NodeName); len(errs) > 0 && !c.Standalone() {
		// In a cluster the name is a Node's and names the agent's EdgeNodeStatus.
		bad("nodeName", "%q is not a Kubernetes node name: %s", c.NodeName, strings.Join(errs, "; "))
	}
	for i, p := range c.VIPPools {
		if _, err := netip.ParsePrefix(p.CIDR); err != nil {
			bad(fmt.Sprintf("vipPools[%d].cidr", i), "%q is not a CIDR", p.CIDR)
		}
		for j, ns := range p.Namespaces {
			// A pool naming a namespace that cannot exist would admit nothing.
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				bad(fmt.Sprintf("vipPools[%d].namespaces[%d]", i, j), "%q is not a namespace name: %s", ns, strings.Join(errs, "; "))
			}
		}
	}
}

func (c *Config) validateBGP(probs *problems) {
	bad := probs.bad
	if c.BGP.RouterID != "" {
		if a, err := netip.ParseAddr(c.BGP.RouterID); err != nil || !a.Is4() {
			bad("bgp.routerID", "%q is not an IPv4 address", c.BGP.RouterID)
		}
	}
	if c.BGP.ListenPort < -1 || c.BGP.ListenPort > 65535 {
		bad("bgp.listenPort", "must be -1 (do not listen) or 1-65535")
	}
	seen := map[string]bool{}
	for i, p := range c.BGP.Peers {
		f := fmt.Sprintf("bgp.peers[%d]", i)
		if _, err := netip.ParseAddr(p.Address); err != nil {
			bad(f+".address", "%q is not an IP address", p.Address)
		} else if seen[p.Address] {
			bad(f+".address", "%s is listed twice", p.Address)
		}
		seen[p.Address] = true
		if p.Password != "" && p.PasswordFile != "" {
			bad(f, "set password or passwordFile, not both")
		}
		if h := p.HoldTime.Duration; h != 0 && h < 3*time.Second {
			bad(f+".holdTime", "must be 0 or at least 3s (RFC 4271)")
		}
		if p.LocalAddress != "" {
			if _, err := netip.ParseAddr(p.LocalAddress); err != nil {
				bad(f+".localAddress", "%q is not an IP address", p.LocalAddress)
			}
		}
	}
	for i, s := range c.BGP.ImportCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			bad(fmt.Sprintf("bgp.importCIDRs[%d]", i), "%q is not a CIDR", s)
		}
	}
	if c.BGP.NodePeers != nil {
		if _, err := labels.Parse(c.BGP.NodePeers.LabelSelector); err != nil {
			bad("bgp.nodePeers.labelSelector", "%v", err)
		}
	}
}

func (c *Config) validateDataplane(probs *problems) {
	bad := probs.bad
	if c.Dataplane.VIPInterface == "" || len(c.Dataplane.VIPInterface) > 15 || strings.ContainsAny(c.Dataplane.VIPInterface, "/ \t\n") {
		bad("dataplane.vipInterface", "%q is not a valid interface name (1-15 characters)", c.Dataplane.VIPInterface)
	}
	switch c.Dataplane.Backend {
	case "iptables", "nftables":
	default:
		bad("dataplane.backend", "%q is not iptables or nftables", c.Dataplane.Backend)
	}
	switch c.Dataplane.IPTablesMode {
	case "auto", "nft", "legacy":
	default:
		hint := ""
		if c.Dataplane.IPTablesMode == "nftables" {
			hint = " (the nftables backend is dataplane.backend: nftables)"
		}
		bad("dataplane.iptablesMode", "%q is not auto, nft or legacy%s", c.Dataplane.IPTablesMode, hint)
	}
	if c.Dataplane.FailureGracePeriod.Duration < 0 {
		bad("dataplane.failureGracePeriod", "must not be negative")
	}
}

func (c *Config) validateKubernetes(probs *problems) {
	bad := probs.bad
	if c.APIServer.ReadIdleTimeout != nil && c.APIServer.ReadIdleTimeout.Duration < 0 {
		bad("apiserver.readIdleTimeout", "must not be negative")
	}
	if c.APIServer.PingTimeout != nil && c.APIServer.PingTimeout.Duration < 0 {
		bad("apiserver.pingTimeout", "must not be negative")
	}
	if ns := c.Kubernetes.Namespace; ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			bad("kubernetes.namespace", "%q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
	}
	if c.Kubernetes.StatusQPS < 0 {
		bad("kubernetes.statusQPS", "must not be negative")
	}
	if c.Kubernetes.StatusBurst < 0 {
		bad("kubernetes.statusBurst", "must not be negative")
	}
	if c.Kubernetes.NeighborStatusInterval.Duration < 0 {
		bad("kubernetes.neighborStatusInterval", "must not be negative")
	}
}

func (c *Config) validateAPV(probs *problems) {
	names := map[string]bool{}
	for i, d := range c.APV.Devices {
		validateDevice(probs, fmt.Sprintf("apv.devices[%d]", i), d, names)
	}
	bad := probs.bad
	if ev := c.APV.Events; ev.SinkURL != "" {
		if u, err := url.Parse(ev.SinkURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("apv.events.sinkURL", "%q must be an http:// or https:// URL", ev.SinkURL)
		}
	}
	if c.APV.Events.QueueSize < 0 {
		bad("apv.events.queueSize", "must not be negative")
	}
	if c.APV.Events.Timeout.Duration < 0 {
		bad("apv.events.timeout", "must not be negative")
	}
}

// validateDevice checks one APV device, f its field path; names holds the
// names seen so far.
func validateDevice(probs *problems, f string, d APVDevice, names map[string]bool) {
	bad := probs.bad
	if d.Name == "" {
		bad(f+".name", "must be set")
	} else if names[d.Name] {
		bad(f+".name", "%q is listed twice", d.Name)
	}
	names[d.Name] = true
	if u, err := url.Parse(d.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		bad(f+".url", "%q must be an https:// URL (the credentials travel in every request)", d.URL)
	}
	// cli_extend takes HTTP basic auth: both files are needed.
	if d.UsernameFile == "" {
		bad(f+".usernameFile", "must be set (a file holding the APV user name)")
	}
	if d.PasswordFile == "" {
		bad(f+".passwordFile", "must be set (a file holding the APV password)")
	}
	if (d.ScanUsernameFile == "") != (d.ScanPasswordFile == "") {
		bad(f+".scanUsernameFile", "scanUsernameFile and scanPasswordFile go together")
	}
	if d.PinnedCertSHA256 != "" {
		if _, err := NormalizeFingerprint(d.PinnedCertSHA256); err != nil {
			bad(f+".pinnedCertSHA256", "%v", err)
		}
		if d.InsecureSkipVerify {
			bad(f+".insecureSkipVerify", "must not be set with pinnedCertSHA256 (the pin is the verification)")
		}
	}
	if strings.ContainsAny(d.HAUnit, "\"\\;$") || strings.ContainsFunc(d.HAUnit, unicode.IsControl) {
		bad(f+".haUnit", "%q must not hold quotes, backslashes, ';', '$' or control characters", d.HAUnit)
	}
}

func (c *Config) validateLogging(probs *problems) {
	bad := probs.bad
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("logLevel", "%q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("logFormat", "%q is not text or json", c.LogFormat)
	}
}

// Pools converts vipPools to the model's form (Validate first).
func (c *Config) Pools() []model.Pool {
	out := make([]model.Pool, 0, len(c.VIPPools))
	for _, p := range c.VIPPools {
		pfx, err := netip.ParsePrefix(p.CIDR)
		if err != nil {
			continue
		}
		out = append(out, model.Pool{CIDR: pfx.Masked(), Namespaces: p.Namespaces})
	}
	return out
}

// Standalone reports whether LBRoutes come from a directory.
func (c *Config) Standalone() bool { return c.Source.Dir != "" }
