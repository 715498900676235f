package bgp

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/config"
)

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `
bgp:
  asn: 65010
  listenPort: -1
  peers:
  - {address: 10.99.0.11}
  - {address: 10.99.0.21, asn: 65001, port: 1179, passwordFile: pw, holdTime: 9s, passive: true, localAddress: 10.99.0.1}
  gracefulRestart: {restartTime: 60s}
  importCIDRs: [10.244.0.0/16]
`
	path := filepath.Join(dir, "edgeagent.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	cfg, peers, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ASN != 65010 || cfg.ListenPort != -1 || !cfg.GracefulRestart || cfg.RestartTime != time.Minute || !cfg.Import ||
		len(cfg.ImportCIDRs) != 1 || cfg.ImportCIDRs[0] != netip.MustParsePrefix("10.244.0.0/16") {
		t.Errorf("config = %+v", cfg)
	}
	want := Peer{Address: netip.MustParseAddr("10.99.0.21"), ASN: 65001, Port: 1179, Password: "from-file",
		HoldTime: 9 * time.Second, Keepalive: 3 * time.Second, Passive: true,
		LocalAddress: netip.MustParseAddr("10.99.0.1"), Source: "config"}
	if len(peers) != 2 || peers[1] != want {
		t.Errorf("peers = %+v", peers)
	}
	if peers[0].ASN != 65010 {
		t.Errorf("a peer without asn must default to ours (iBGP): %+v", peers[0])
	}

	c.BGP.Peers[1].PasswordFile = "missing"
	if _, _, err := FromConfig(c); err == nil || !strings.Contains(err.Error(), "bgp.peers[1].passwordFile") {
		t.Errorf("missing password file: %v", err)
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{RouterID: "fd00::1"}, "bgp.routerID"},
		{Config{ListenPort: -2}, "bgp.listenPort"},
		{Config{ListenAddresses: []string{"nope"}}, "bgp.listenAddresses[0]"},
	} {
		if _, err := New(c.cfg, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestInitialHoldDefault(t *testing.T) {
	c := Config{GracefulRestart: true}
	c.applyDefaults()
	if c.InitialHold != 90*time.Second {
		t.Errorf("with graceful restart: %s", c.InitialHold)
	}
	c = Config{}
	c.applyDefaults()
	if c.InitialHold != DefaultInitialHold {
		t.Errorf("without: %s", c.InitialHold)
	}
}
