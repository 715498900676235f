package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// contract is the config file of DESIGN.md, verbatim in its fields.
const contract = `
nodeName: edge-1
source:
  kubeconfig: ""
  dir: routes
vipPools:
- cidr: 10.200.0.0/24
  namespaces: []
bgp:
  enabled: true
  asn: 64512
  routerID: ""
  listenPort: 179
  peers:
  - {address: 10.99.0.2, asn: 64512, port: 179, password: "", holdTime: 90s}
  gracefulRestart: {enabled: true, restartTime: 120s}
  importRoutes: true
  importCIDRs: [10.244.0.0/16]
dataplane: {vipInterface: edge-vip0, masquerade: true}
apiserver: {readIdleTimeout: 10s, pingTimeout: 5s}
apv:
  devices:
  - {name: apv-a, url: "https://192.0.2.10:9997", usernameFile: u, passwordFile: p, caFile: ca}
  syncInterval: 30s
  scanInterval: 60s
metricsAddress: ":9560"
adminAddress: "127.0.0.1:9561"
`

func TestContractFileLoads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(contract), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Resolve(c.Source.Dir); got != filepath.Join(dir, "routes") {
		t.Errorf("source.dir resolves to %s, want it relative to the config file", got)
	}
	p := c.BGP.Peers[0]
	if p.HoldTime.Duration != 90*time.Second || p.KeepaliveTime.Duration != 30*time.Second || p.Port != 179 {
		t.Errorf("peer: %+v", p)
	}
	if c.APIServer.ReadIdleTimeout.Duration != 10*time.Second || c.APIServer.PingTimeout.Duration != 5*time.Second {
		t.Errorf("apiserver: %+v", c.APIServer)
	}
	if len(c.Pools()) != 1 || c.Pools()[0].CIDR.String() != "10.200.0.0/24" {
		t.Errorf("pools: %+v", c.Pools())
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("NODE_NAME", "from-env")
	t.Setenv("HTTP2_READ_IDLE_TIMEOUT_SECONDS", "7")
	c := Default()
	c.BGP.Peers = []Peer{{Address: "10.0.0.1"}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	switch {
	case c.NodeName != "from-env":
		t.Errorf("nodeName %q", c.NodeName)
	case c.BGP.ASN != 64512 || c.BGP.Peers[0].ASN != 64512:
		t.Errorf("ASN defaults: %d / %d (iBGP with Calico's default)", c.BGP.ASN, c.BGP.Peers[0].ASN)
	case !*c.BGP.GracefulRestart.Enabled || c.BGP.GracefulRestart.RestartTime.Duration != 120*time.Second:
		t.Errorf("graceful restart defaults")
	case c.Dataplane.VIPInterface != "edge-vip0" || !*c.Dataplane.Masquerade:
		t.Errorf("dataplane defaults")
	case c.APIServer.ReadIdleTimeout.Duration != 7*time.Second || c.APIServer.PingTimeout.Duration != 5*time.Second:
		t.Errorf("apiserver: HTTP2_READ_IDLE_TIMEOUT_SECONDS not honoured: %v", c.APIServer.ReadIdleTimeout)
	case c.MetricsAddress != ":9560" || c.AdminAddress != "127.0.0.1:9561":
		t.Errorf("addresses")
	}
}

func TestValidateNamesFields(t *testing.T) {
	c, err := Parse([]byte(`
vipPools: [{cidr: 10.0.0.0/40}]
bgp:
  routerID: 1.2.3
  listenPort: 70000
  peers: [{address: 10.0.0.1, holdTime: 1s}, {address: 10.0.0.1}, {address: x}]
  importCIDRs: [10.244.0.0]
dataplane: {vipInterface: "a-very-long-interface-name", iptablesMode: nftables, backend: ebpf, failureGracePeriod: -1s}
apv: {devices: [{name: a, url: "ftp://x"}, {name: a, url: "https://y"}]}
logLevel: loud
`))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	err = c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, f := range []string{"vipPools[0].cidr", "bgp.routerID", "bgp.listenPort", "bgp.peers[0].holdTime",
		"bgp.peers[1].address: 10.0.0.1 is listed twice", "bgp.peers[2].address", "bgp.importCIDRs[0]",
		"dataplane.vipInterface", `dataplane.iptablesMode: "nftables" is not auto, nft or legacy (the nftables backend is dataplane.backend: nftables)`,
		`dataplane.backend: "ebpf" is not iptables or nftables`, "dataplane.failureGracePeriod",
		"apv.devices[0].url", "apv.devices[1].name", "logLevel"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error lacks %q:\n%v", f, err)
		}
	}
}

func TestParseIsStrict(t *testing.T) {
	if _, err := Parse([]byte("bgp: {asn: 64512, peer: []}\n")); err == nil || !strings.Contains(err.Error(), "peer") {
		t.Fatalf("misspelt field accepted: %v", err)
	}
}

// Names that end up in Kubernetes are checked with apimachinery's own rules,
// at load time rather than when the apiserver refuses them.
func TestValidateKubernetesNames(t *testing.T) {
	c, err := Parse([]byte(`
nodeName: Edge_1
vipPools: [{cidr: 10.200.0.0/24, namespaces: [shop, Shop_Team]}]
kubernetes: {namespace: Edge.System}
bgp: {nodePeers: {labelSelector: "role in (edge"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	err = c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, f := range []string{`nodeName: "Edge_1" is not a Kubernetes node name`, `vipPools[0].namespaces[1]: "Shop_Team"`,
		`kubernetes.namespace: "Edge.System"`, "bgp.nodePeers.labelSelector"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error lacks %q:\n%v", f, err)
		}
	}
	if strings.Contains(err.Error(), "namespaces[0]") {
		t.Errorf("valid namespace refused:\n%v", err)
	}

	// Standalone, the node name names nothing in Kubernetes: a host name will do.
	c, err = Parse([]byte("nodeName: Edge_1\nsource: {dir: routes}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("standalone with node name Edge_1: %v", err)
	}
}
