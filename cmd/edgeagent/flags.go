package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/spf13/pflag"
)

// overrides are the flags of `edgeagent run`: one per config field. Only
// flags given on the command line override the file.
type overrides struct {
	nodeName, kubeconfig, sourceDir             string
	vipPools                                    []string
	bgpEnabled                                  bool
	bgpASN                                      uint32
	routerID                                    string
	listenPort                                  int32
	peers                                       []string
	grEnabled                                   bool
	grTime                                      time.Duration
	importRoutes                                bool
	importCIDRs                                 []string
	withdrawOnExit                              bool
	vipInterface                                string
	masquerade                                  bool
	readIdle, pingTimeout                       time.Duration
	apiCompression                              bool
	apvSync, apvScan                            time.Duration
	metricsAddr, adminAddr, logLevel, logFormat string
	resync, holdTime                            time.Duration
	hcConcurrency                               int
	k8sNamespace, nodePeerSelector              string
	autoLBRoute, neighborStatus                 bool
	iptablesMode                                string
	backend                                     string
	failureGrace                                time.Duration
	importMetric                                uint32
}

func (o *overrides) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.nodeName, "node-name", "", "node name (default $NODE_NAME, then the host name)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (\"\" = in-cluster)")
	fs.StringVar(&o.sourceDir, "source-dir", "", "standalone mode: directory of LBRoute YAML files")
	fs.StringSliceVar(&o.vipPools, "vip-pool", nil, "allowed VIP CIDR, optionally CIDR=ns1;ns2 (repeatable)")
	fs.BoolVar(&o.bgpEnabled, "bgp-enabled", true, "run BGP")
	fs.Uint32Var(&o.bgpASN, "bgp-asn", config.DefaultASN, "local AS number")
	fs.StringVar(&o.routerID, "bgp-router-id", "", "BGP router ID (default: the node IP)")
	fs.Int32Var(&o.listenPort, "bgp-listen-port", config.DefaultBGPPort, "BGP listen port (-1: do not listen)")
	fs.StringSliceVar(&o.peers, "bgp-peer", nil, "peer as ADDRESS[:ASN[:PORT]] (repeatable)")
	fs.BoolVar(&o.grEnabled, "bgp-graceful-restart", true, "graceful restart (RFC 4724)")
	fs.DurationVar(&o.grTime, "bgp-restart-time", config.DefaultRestartTime, "graceful restart time")
	fs.BoolVar(&o.importRoutes, "bgp-import-routes", true, "install learned routes into the kernel")
	fs.StringSliceVar(&o.importCIDRs, "bgp-import-cidr", nil, "accept only learned prefixes inside these CIDRs (repeatable)")
	fs.BoolVar(&o.withdrawOnExit, "withdraw-on-exit", false, "withdraw all VIPs before exiting (node drain) instead of graceful restart")
	fs.StringVar(&o.vipInterface, "vip-interface", config.DefaultVIPInterface, "interface that holds the VIPs")
	fs.BoolVar(&o.masquerade, "masquerade", true, "masquerade DNATed traffic")
	fs.DurationVar(&o.readIdle, "apiserver-read-idle-timeout", config.DefaultReadIdleTimeout, "HTTP/2 ReadIdleTimeout to the apiserver (0 disables pings)")
	fs.DurationVar(&o.pingTimeout, "apiserver-ping-timeout", config.DefaultPingTimeout, "HTTP/2 PingTimeout to the apiserver")
	fs.BoolVar(&o.apiCompression, "apiserver-compression", config.DefaultAPIServerCompression, "ask the apiserver to gzip its responses (for a thin link to it)")
	fs.DurationVar(&o.apvSync, "apv-sync-interval", config.DefaultAPVSyncInterval, "APV sync period")
	fs.DurationVar(&o.apvScan, "apv-scan-interval", config.DefaultAPVScanInterval, "APV scan period")
	fs.StringVar(&o.metricsAddr, "metrics-address", config.DefaultMetricsAddress, "Prometheus /metrics listen address")
	fs.StringVar(&o.adminAddr, "admin-address", config.DefaultAdminAddress, "admin listen address (/status, /healthz, /readyz)")
	fs.StringVar(&o.logLevel, "log-level", config.DefaultLogLevel, "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", config.DefaultLogFormat, "text or json")
	fs.DurationVar(&o.resync, "dataplane-resync-interval", config.DefaultResyncInterval, "how often the dataplane re-reads the kernel to repair what others removed (negative: never)")
	fs.StringVar(&o.backend, "dataplane-backend", config.DefaultBackend, "rules backend: iptables or nftables")
	fs.StringVar(&o.iptablesMode, "dataplane-iptables-mode", config.DefaultIPTablesMode, "iptables backend: auto (match the node's), nft or legacy")
	fs.DurationVar(&o.failureGrace, "dataplane-failure-grace-period", config.DefaultFailureGracePeriod, "how long the dataplane may keep failing before /readyz reports not ready")
	fs.Uint32Var(&o.importMetric, "bgp-import-metric", config.DefaultImportMetric, "kernel metric of learned routes (above other routing daemons', so theirs win)")
	fs.DurationVar(&o.holdTime, "healthcheck-hold-time", config.DefaultHealthHoldTime, "least time between two health-caused changes of a VIP's announcement")
	fs.IntVar(&o.hcConcurrency, "healthcheck-concurrency", config.DefaultHealthConcurrency, "health probes in flight at most")
	fs.StringVar(&o.k8sNamespace, "kubernetes-namespace", "", "namespace of the leader-election Lease (default $POD_NAMESPACE, then "+config.DefaultNamespace+")")
	fs.BoolVar(&o.autoLBRoute, "auto-lbroute", true, "create LBRoutes for LoadBalancer Services in namespaces labelled need-auto-LBRoute=true")
	fs.BoolVar(&o.neighborStatus, "neighbor-status", true, "write this node's BGP sessions into an EdgeNodeStatus object")
	fs.StringVar(&o.nodePeerSelector, "bgp-node-peers", "", "also peer with Nodes matching this label selector, at their Calico address annotation")
}

// apply copies every flag the user set onto cfg.
func (o *overrides) apply(fs *pflag.FlagSet, c *config.Config) error {
	set := func(name string) bool { return fs.Changed(name) }
	b := func(v bool) *bool { return &v }
	if set("node-name") {
		c.NodeName = o.nodeName
	}
	if set("kubeconfig") {
		c.Source.Kubeconfig = o.kubeconfig
	}
	if set("source-dir") {
		// Relative to the working directory, unlike the file's own paths.
		c.Source.Dir = o.sourceDir
	}
	if set("vip-pool") {
		c.VIPPools = nil
		for _, p := range o.vipPools {
			cidr, nss, _ := strings.Cut(p, "=")
			pool := config.VIPPool{CIDR: cidr}
			if nss != "" {
				pool.Namespaces = strings.Split(nss, ";")
			}
			c.VIPPools = append(c.VIPPools, pool)
		}
	}
	if set("bgp-enabled") {
		c.BGP.Enabled = b(o.bgpEnabled)
	}
	if set("bgp-asn") {
		c.BGP.ASN = o.bgpASN
	}
	if set("bgp-router-id") {
		c.BGP.RouterID = o.routerID
	}
	if set("bgp-listen-port") {
		c.BGP.ListenPort = o.listenPort
	}
	if set("bgp-peer") {
		c.BGP.Peers = nil
		for _, s := range o.peers {
			p, err := parsePeerFlag(s)
			if err != nil {
				return fmt.Errorf("--bgp-peer %q: %w", s, err)
			}
			c.BGP.Peers = append(c.BGP.Peers, p)
		}
	}
	if set("bgp-graceful-restart") {
		c.BGP.GracefulRestart.Enabled = b(o.grEnabled)
	}
	if set("bgp-restart-time") {
		c.BGP.GracefulRestart.RestartTime.Duration = o.grTime
	}
	if set("bgp-import-routes") {
		c.BGP.ImportRoutes = b(o.importRoutes)
	}
	if set("bgp-import-cidr") {
		c.BGP.ImportCIDRs = o.importCIDRs
	}
	if set("withdraw-on-exit") {
		c.BGP.WithdrawOnExit = o.withdrawOnExit
	}
	if set("vip-interface") {
		c.Dataplane.VIPInterface = o.vipInterface
	}
	if set("masquerade") {
		c.Dataplane.Masquerade = b(o.masquerade)
	}
	if set("apiserver-read-idle-timeout") {
		c.APIServer.ReadIdleTimeout = &config.Duration{Duration: o.readIdle}
	}
	if set("apiserver-ping-timeout") {
		c.APIServer.PingTimeout = &config.Duration{Duration: o.pingTimeout}
	}
	if set("apiserver-compression") {
		c.APIServer.Compression = b(o.apiCompression)
	}
	if set("apv-sync-interval") {
		c.APV.SyncInterval.Duration = o.apvSync
	}
	if set("apv-scan-interval") {
		c.APV.ScanInterval.Duration = o.apvScan
	}
	if set("metrics-address") {
		c.MetricsAddress = o.metricsAddr
	}
	if set("admin-address") {
		c.AdminAddress = o.adminAddr
	}
	if set("log-level") {
		c.LogLevel = o.logLevel
	}
	if set("log-format") {
		c.LogFormat = o.logFormat
	}
	if set("dataplane-resync-interval") {
		c.Dataplane.ResyncInterval.Duration = o.resync
	}
	if set("dataplane-backend") {
		c.Dataplane.Backend = o.backend
	}
	if set("dataplane-iptables-mode") {
		c.Dataplane.IPTablesMode = o.iptablesMode
	}
	if set("dataplane-failure-grace-period") {
		c.Dataplane.FailureGracePeriod.Duration = o.failureGrace
	}
	if set("bgp-import-metric") {
		c.BGP.ImportMetric = o.importMetric
	}
	if set("healthcheck-hold-time") {
		c.HealthCheck.HoldTime.Duration = o.holdTime
	}
	if set("healthcheck-concurrency") {
		c.HealthCheck.Concurrency = o.hcConcurrency
	}
	if set("kubernetes-namespace") {
		c.Kubernetes.Namespace = o.k8sNamespace
	}
	if set("auto-lbroute") {
		c.Kubernetes.AutoLBRoute = b(o.autoLBRoute)
	}
	if set("neighbor-status") {
		c.Kubernetes.NeighborStatus = b(o.neighborStatus)
	}
	if set("bgp-node-peers") {
		if c.BGP.NodePeers == nil {
			c.BGP.NodePeers = &config.NodePeers{}
		}
		c.BGP.NodePeers.LabelSelector = o.nodePeerSelector
	}
	return nil
}

// parsePeerFlag reads ADDRESS[:ASN[:PORT]]; an IPv6 address goes in
// brackets: [fd00::1]:64512.
func parsePeerFlag(s string) (config.Peer, error) {
	var p config.Peer
	rest := s
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return p, fmt.Errorf("missing ']'")
		}
		p.Address, rest = s[1:end], strings.TrimPrefix(s[end+1:], ":")
	} else {
		p.Address, rest, _ = strings.Cut(s, ":")
	}
	if rest == "" {
		return p, nil
	}
	asn, port, _ := strings.Cut(rest, ":")
	n, err := strconv.ParseUint(asn, 10, 32)
	if err != nil {
		return p, fmt.Errorf("ASN %q: %w", asn, err)
	}
	p.ASN = uint32(n)
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return p, fmt.Errorf("port %q: %w", port, err)
		}
		p.Port = uint16(n)
	}
	return p, nil
}
