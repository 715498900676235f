package apv

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/model"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func golden(t *testing.T, name string, lines []string) {
	t.Helper()
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./apv -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

func real4(ip string, port uint16, w uint32) model.Real {
	return model.Real{IP: netip.MustParseAddr(ip), Port: port, Weight: w, Healthy: true}
}

// sampleState is two LBRoutes: shop/web (HTTP check, wrr, two ports) and
// dns/resolver (UDP, source hash, no check).
func sampleState() model.State {
	web := model.VirtualService{
		Namespace: "shop", Route: "web", Name: "shop-web", Group: "shop-web",
		VIP: netip.MustParseAddr("10.200.0.10"), Port: 80, Protocol: model.TCP, Policy: model.WeightedRoundRobin,
		Reals: []model.Real{real4("10.244.1.10", 8080, 3), real4("10.244.2.11", 8080, 1),
			{IP: netip.MustParseAddr("10.244.3.12"), Port: 8080, Weight: 1, Healthy: true, Terminating: true}},
		Health: model.HealthSpec{Type: model.HealthHTTP, Interval: 5 * time.Second, Timeout: 1500 * time.Millisecond, Rise: 2, Fall: 3,
			Path: "/healthz", ExpectedStatus: []model.StatusRange{{Min: 200, Max: 299}, {Min: 301, Max: 301}}},
	}
	webTLS := web
	webTLS.Port = 443
	webTLS.Reals = []model.Real{real4("10.244.1.10", 8443, 1), {IP: netip.MustParseAddr("fd00::10"), Port: 8443, Weight: 1, Healthy: false}}
	webTLS.Health = model.DefaultHealth
	webTLS.Policy = model.RoundRobin
	dns := model.VirtualService{
		Namespace: "dns", Route: "resolver", Name: "dns-resolver-with-a-long-name-that-gets-cut",
		VIP: netip.MustParseAddr("10.200.0.53"), Port: 53, Protocol: model.UDP, Policy: model.SourceHash,
		Reals:  []model.Real{real4("10.244.1.20", 53, 1)},
		Health: model.HealthSpec{Type: model.HealthNone},
	}
	return model.State{Services: []model.VirtualService{web, webTLS, dns}}
}

func mustRender(t *testing.T, s model.State) Config {
	t.Helper()
	c, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRenderGolden(t *testing.T) {
	c := mustRender(t, sampleState())
	golden(t, "render_sample", c.Lines())
	for _, l := range c.Lines() {
		if err := checkLine(l); err != nil {
			t.Errorf("rendered line fails the wire check: %v", err)
		}
	}
}

func TestDiffGolden(t *testing.T) {
	full := mustRender(t, sampleState())

	golden(t, "diff_create", Diff(Config{}, full))
	if got := Diff(full, full); len(got) != 0 {
		t.Errorf("no-op diff sent %v", got)
	}

	// Update: a real leaves, one joins, a weight changes, the policy of the
	// UDP service becomes rr and the HTTP check path changes.
	st := sampleState()
	st.Services[0].Reals = []model.Real{real4("10.244.1.10", 8080, 5), real4("10.244.4.13", 8080, 1)}
	st.Services[0].Health.Path = "/ready"
	st.Services[2].Policy = model.RoundRobin
	golden(t, "diff_update", Diff(full, mustRender(t, st)))

	// Delete the web LBRoute (both ports).
	st = sampleState()
	st.Services = st.Services[2:]
	golden(t, "diff_delete_route", Diff(full, mustRender(t, st)))

	golden(t, "diff_delete_all", Diff(full, Config{}))
}

// Applying a diff to a parsed device config must reach the wanted config:
// ParseConfig(lines of want) equals want, for every transition above.
func TestParseRoundTrip(t *testing.T) {
	full := mustRender(t, sampleState())
	text := "slb real tcp \"foreign\" 1.2.3.4 80 1000 tcp 3 3\n" + strings.Join(full.Lines(), "\n") +
		"\nslb policy default \"vs_other\" \"g_other\"\nip address \"port1\" 192.168.3.20 255.255.255.0\n"
	got, bad := ParseConfig(text)
	if bad != 0 {
		t.Errorf("unreadable lines: %d", bad)
	}
	if d := Diff(got, full); len(d) != 0 {
		t.Errorf("parsed config differs from rendered: %v", d)
	}
	if _, ok := got.Reals["foreign"]; ok {
		t.Error("foreign real was parsed as owned")
	}
}

func TestForeignObjectsNeverTouched(t *testing.T) {
	cur, _ := ParseConfig(`slb real tcp "rs1" 172.16.0.9 80 1000 tcp 3 3
slb group method "gm1" rr
slb group member "gm1" "rs1" 1 0
slb virtual tcp "vs1" 172.16.0.3 80 arp 0
slb policy default "vs1" "gm1"
`)
	if !cur.Empty() {
		t.Fatalf("foreign objects parsed as owned: %v", cur.Lines())
	}
	for _, l := range Diff(cur, Config{}) {
		t.Errorf("diff touched something: %s", l)
	}
}

func TestRenderRefusesInjection(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*model.VirtualService)
		want string
	}{
		{"group newline", func(vs *model.VirtualService) { vs.Group = "g\nwrite memory" }, "group"},
		{"name quote", func(vs *model.VirtualService) { vs.Name = `a" "b` }, "vsName"},
		{"name too long", func(vs *model.VirtualService) { vs.Name = strings.Repeat("a", 64) }, "vsName"},
		{"path quote", func(vs *model.VirtualService) { vs.Health.Path = `/x" "y` }, "healthCheck.path"},
		{"path newline", func(vs *model.VirtualService) { vs.Health.Path = "/x\nwrite memory" }, "healthCheck.path"},
		{"policy", func(vs *model.VirtualService) { vs.Policy = "lc" }, "policy"},
		{"protocol", func(vs *model.VirtualService) { vs.Protocol = "SCTP" }, "protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := sampleState()
			tc.mut(&st.Services[0])
			c, err := Render(st)
			key := st.Services[0].Key()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), key) {
				t.Fatalf("error = %v, want one naming %s and %s", err, key, tc.want)
			}
			// The refused service is absent; the others are still rendered.
			n := NamesFor(&sampleState().Services[0])
			if _, ok := c.Virtuals[n.Virtual]; ok {
				t.Error("refused service was rendered")
			}
			if len(c.Virtuals) != 2 {
				t.Errorf("other services: got %d virtuals, want 2", len(c.Virtuals))
			}
		})
	}
}

func TestCheckLine(t *testing.T) {
	for _, bad := range []string{"", "slb real tcp \"a\nwrite memory\"", "slb \"x", "a\\b", "a\rb"} {
		if checkLine(bad) == nil {
			t.Errorf("checkLine(%q) accepted", bad)
		}
	}
	if err := checkLine(`slb policy default "ea_v" "ea_g"`); err != nil {
		t.Error(err)
	}
	for name, ok := range map[string]bool{"ea_a.b-c": true, "_x": true, "-x": false, ".x": false, `a"b`: false, "a b": false,
		"": false, strings.Repeat("a", MaxObjectNameLen): true, strings.Repeat("a", MaxObjectNameLen+1): false, "a\nb": false} {
		if got := checkObjectName(name) == nil; got != ok {
			t.Errorf("checkObjectName(%q) ok = %v, want %v", name, got, ok)
		}
	}
}

func TestNamesFitAndAreStable(t *testing.T) {
	st := sampleState()
	for i := range st.Services {
		n := NamesFor(&st.Services[i])
		for _, s := range []string{n.Virtual, n.Group, n.Health} {
			if err := checkObjectName(s); err != nil {
				t.Error(err)
			}
			if !owned(s) {
				t.Errorf("%s lacks the owner prefix", s)
			}
		}
		if n != NamesFor(&st.Services[i]) {
			t.Error("names are not deterministic")
		}
	}
	long := RealName(model.TCP, model.Real{IP: netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1234:5678"), Port: 65535})
	if err := checkObjectName(long); err != nil {
		t.Error(err)
	}
}

// The show formats published for ArrayOS (netkiller's Array CLI notes:
// `show slb real http`, `show slb group member gm1`, `show slb virtual
// http`, `show slb policy all`), with owned names, parse into the objects.
func TestParsePublishedShowFormats(t *testing.T) {
	c, bad := ParseConfig(`slb real http "ea_rs1" 172.16.0.9 80 1000 tcp 3 3
slb real http "ea_rs2" 172.16.0.5 80 4096 http 3 3
slb group method "ea_gm1" rr
slb group member "ea_gm1" "ea_rs1" 1 0
slb group member "ea_gm1" "ea_rs2" 1 0
slb virtual http "ea_vs1" 172.16.0.3 80 arp 0
slb policy default "ea_vs1" "ea_gm1"
`)
	if bad != 0 {
		t.Fatalf("%d unreadable lines", bad)
	}
	if r := c.Reals["ea_rs1"]; r.Proto != "http" || r.IP.String() != "172.16.0.9" || r.Port != 80 {
		t.Errorf("real = %+v", r)
	}
	if g := c.Groups["ea_gm1"]; g.Method != "rr" || len(g.Members) != 2 || g.Members["ea_rs2"] != 1 {
		t.Errorf("group = %+v", g)
	}
	if v := c.Virtuals["ea_vs1"]; v.Proto != "http" || v.Port != 80 {
		t.Errorf("virtual = %+v", v)
	}
	if c.Policies["ea_vs1"] != "ea_gm1" {
		t.Errorf("policies = %v", c.Policies)
	}
	// An owned http real is not what the agent renders (tcp): the diff
	// replaces it, deleting with the protocol it was created with.
	d := Diff(c, Config{})
	if !slices.Contains(d, `no slb real http "ea_rs1"`) {
		t.Errorf("diff = %v", d)
	}
}
