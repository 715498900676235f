package bgp

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/golden"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/arraynetworks/edgeagent/model"
)

// stableJSON renders a protobuf message as indented JSON with sorted keys
// (protojson's own output deliberately varies its spacing).
func stableJSON(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestPeerTranslationGolden(t *testing.T) {
	cfg := Config{ASN: 64512, GracefulRestart: true}
	cfg.applyDefaults()
	peers := []struct {
		name       string
		p          Peer
		restarting bool
	}{
		{"calico-ibgp-defaults", Peer{Address: netip.MustParseAddr("10.99.0.11")}, true},
		{"frr-md5-timers-port", Peer{Address: netip.MustParseAddr("10.99.0.21"), ASN: 65001, Port: 1179,
			Password: "s3cret", HoldTime: 9 * time.Second, Keepalive: 3 * time.Second, Source: "config"}, false},
		{"passive-local-address", Peer{Address: netip.MustParseAddr("10.99.0.12"), Passive: true,
			LocalAddress: netip.MustParseAddr("10.99.0.1"), Source: "node/calico2"}, false},
		{"ipv6", Peer{Address: netip.MustParseAddr("fd00::2")}, false},
	}
	var b strings.Builder
	for _, c := range peers {
		fmt.Fprintf(&b, "# %s (restarting=%v)\n%s\n", c.name, c.restarting, stableJSON(t, peerAPI(c.p.withDefaults(cfg.ASN), cfg, c.restarting)))
	}
	noGR := cfg
	noGR.GracefulRestart = false
	fmt.Fprintf(&b, "# graceful restart disabled\n%s\n", stableJSON(t, peerAPI(peers[0].p.withDefaults(cfg.ASN), noGR, false)))
	fmt.Fprintf(&b, "# global, no listen\n%s\n", stableJSON(t, globalAPI(Config{ASN: 64512, ListenPort: -1, ListenAddresses: []string{"10.99.0.1"}}, "10.99.0.1")))
	pol, asg := exportPolicy()
	fmt.Fprintf(&b, "# export policy\n%s\n%s\n", stableJSON(t, pol), stableJSON(t, asg))
	golden.AssertString(t, filepath.Join("testdata", "peers.golden"), b.String())
}

func lp(v uint32) *uint32 { return &v }

func TestPathTranslationGolden(t *testing.T) {
	routes := []model.VIPRoute{
		{Prefix: netip.MustParsePrefix("10.200.0.10/32")},
		{Prefix: netip.MustParsePrefix("10.200.0.11/32"), Attrs: model.Advertisement{
			Communities:      []string{"65000:100", "no-export", "64512:7", "65000:100"},
			LargeCommunities: []string{"64512:1:2", "4200000000:3:4"},
			LocalPref:        lp(200),
		}},
		{Prefix: netip.MustParsePrefix("fd00:200::10/128"), Attrs: model.Advertisement{Communities: []string{"blackhole"}}},
	}
	var b strings.Builder
	for _, r := range routes {
		attrs, err := vipAttrs(r)
		if err != nil {
			t.Fatalf("%s: %v", r.Prefix, err)
		}
		fmt.Fprintf(&b, "%s %s\n", vipNLRI(r.Prefix), attrKey(r))
		for _, a := range attrs {
			fmt.Fprintf(&b, "  %s\n", a)
		}
		if _, err := vipPath(r); err != nil {
			t.Fatalf("%s: %v", r.Prefix, err)
		}
	}
	golden.AssertString(t, filepath.Join("testdata", "paths.golden"), b.String())
}

func TestVIPAttrsErrors(t *testing.T) {
	cases := []struct {
		r    model.VIPRoute
		want string
	}{
		{model.VIPRoute{Prefix: netip.MustParsePrefix("10.200.0.0/24")}, "must be a host route"},
		{model.VIPRoute{Prefix: netip.MustParsePrefix("10.200.0.1/32"), Attrs: model.Advertisement{Communities: []string{"70000:1"}}}, `community "70000:1"`},
		{model.VIPRoute{Prefix: netip.MustParsePrefix("10.200.0.1/32"), Attrs: model.Advertisement{Communities: []string{"no-such-name"}}}, "well-known name"},
		{model.VIPRoute{Prefix: netip.MustParsePrefix("10.200.0.1/32"), Attrs: model.Advertisement{LargeCommunities: []string{"1:2"}}}, "want ASN:X:Y"},
		{model.VIPRoute{Prefix: netip.MustParsePrefix("10.200.0.1/32"), Attrs: model.Advertisement{LargeCommunities: []string{"1:2:x"}}}, "part 3"},
	}
	for _, c := range cases {
		_, err := vipAttrs(c.r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want it to mention %q", c.r, err, c.want)
		}
	}
}

func TestParseCommunity(t *testing.T) {
	for s, want := range map[string]uint32{"65000:100": 65000<<16 | 100, "no-export": 0xFFFFFF01, "NO-ADVERTISE": 0xFFFFFF02, "4259840100": 4259840100} {
		got, err := parseCommunity(s)
		if err != nil || got != want {
			t.Errorf("parseCommunity(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
}

func TestAttrKeyOrderInsensitive(t *testing.T) {
	a := model.VIPRoute{Attrs: model.Advertisement{Communities: []string{"1:1", "2:2"}}}
	b := model.VIPRoute{Attrs: model.Advertisement{Communities: []string{"2:2", "1:1"}}}
	c := model.VIPRoute{Attrs: model.Advertisement{Communities: []string{"2:2", "1:1"}, LocalPref: lp(100)}}
	if attrKey(a) != attrKey(b) {
		t.Error("the order of communities must not cause an update")
	}
	if attrKey(b) == attrKey(c) {
		t.Error("a local-pref change must cause an update")
	}
}

func TestDiffPeers(t *testing.T) {
	a := Peer{Address: netip.MustParseAddr("10.0.0.1"), ASN: 1, Port: 179}.withDefaults(1)
	b := Peer{Address: netip.MustParseAddr("10.0.0.2"), ASN: 1}.withDefaults(1)
	c := Peer{Address: netip.MustParseAddr("10.0.0.3"), ASN: 1}.withDefaults(1)
	b2 := b
	b2.Password = "x"
	cur := map[netip.Addr]Peer{a.Address: a, b.Address: b}
	ch, err := diffPeers(cur, []Peer{a, b2, c, c})
	if err == nil || !strings.Contains(err.Error(), "10.0.0.3") {
		t.Errorf("duplicate peer: err = %v", err)
	}
	if len(ch.Add) != 1 || ch.Add[0] != c {
		t.Errorf("add = %v", ch.Add)
	}
	if len(ch.Replace) != 1 || ch.Replace[0] != b2 {
		t.Errorf("replace = %v", ch.Replace)
	}
	if len(ch.Delete) != 0 {
		t.Errorf("delete = %v", ch.Delete)
	}
	ch, _ = diffPeers(cur, []Peer{b})
	if len(ch.Delete) != 1 || ch.Delete[0] != a || len(ch.Add)+len(ch.Replace) != 0 {
		t.Errorf("removing a: %+v", ch)
	}
	ch, _ = diffPeers(cur, []Peer{a, b})
	if len(ch.Add)+len(ch.Replace)+len(ch.Delete) != 0 {
		t.Errorf("unchanged set must be a no-op: %+v", ch)
	}
}

func TestValidatePeer(t *testing.T) {
	ok := Peer{Address: netip.MustParseAddr("10.0.0.1")}.withDefaults(1)
	if err := validatePeer(ok); err != nil {
		t.Fatal(err)
	}
	bad := []Peer{
		{},
		{Address: netip.MustParseAddr("0.0.0.0")},
		{Address: netip.MustParseAddr("10.0.0.1"), HoldTime: time.Second},
		{Address: netip.MustParseAddr("10.0.0.1"), Password: strings.Repeat("x", 81)},
		{Address: netip.MustParseAddr("10.0.0.1"), LocalAddress: netip.MustParseAddr("fd00::1")},
	}
	for _, p := range bad {
		if err := validatePeer(p.withDefaults(1)); err == nil {
			t.Errorf("%+v: want an error", p)
		}
	}
}

func TestMergePeers(t *testing.T) {
	c1 := Peer{Address: netip.MustParseAddr("10.99.0.21"), Password: "x", Source: "config"}
	n1 := Peer{Address: netip.MustParseAddr("10.99.0.21"), Source: "node/frr"}
	n2 := Peer{Address: netip.MustParseAddr("10.99.0.12"), Source: "node/calico2"}
	got := mergePeers([]Peer{c1}, []Peer{n1, n2, n2})
	if len(got) != 2 || got[0] != c1 || got[1] != n2 {
		t.Errorf("got %+v: want the configured peer to win and the node peer once", got)
	}
}
