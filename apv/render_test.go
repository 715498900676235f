package apv

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/golden"

	"github.com/arraynetworks/edgeagent/model"
)

// goldenLines compares command lines with testdata/name.golden.
func goldenLines(t *testing.T, name string, lines []string) {
	t.Helper()
	golden.AssertString(t, filepath.Join("testdata", name+".golden"), strings.Join(lines, "\n")+"\n")
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
	goldenLines(t, "render_sample", c.Lines())
	for _, l := range c.Lines() {
		if err := checkLine(l); err != nil {
			t.Errorf("rendered line fails the wire check: %v", err)
		}
	}
}

func TestDiffGolden(t *testing.T) {
	full := mustRender(t, sampleState())

	goldenLines(t, "diff_create", Diff(Config{}, full))
	if got := Diff(full, full); len(got) != 0 {
		t.Errorf("no-op diff sent %v", got)
	}

	// Update: a real leaves, one joins, a weight changes, the policy of the
	// UDP service becomes rr and the HTTP check path changes.
	st := sampleState()
	st.Services[0].Reals = []model.Real{real4("10.244.1.10", 8080, 5), real4("10.244.4.13", 8080, 1)}
	st.Services[0].Health.Path = "/ready"
	st.Services[2].Policy = model.RoundRobin
	goldenLines(t, "diff_update", Diff(full, mustRender(t, st)))

	// Delete the web LBRoute (both ports).
	st = sampleState()
	st.Services = st.Services[2:]
	goldenLines(t, "diff_delete_route", Diff(full, mustRender(t, st)))

	goldenLines(t, "diff_delete_all", Diff(full, Config{}))
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
		{"path semicolon", func(vs *model.VirtualService) { vs.Health.Path = "/x;write memory" }, "healthCheck.path"},
		{"path dollar", func(vs *model.VirtualService) { vs.Health.Path = "/$$x$$" }, "healthCheck.path"},
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
	for _, bad := range []string{"", "slb real tcp \"a\nwrite memory\"", "slb \"x", "a\\b", "a\rb",
		`show ssl certificate "a"; write memory`, `slb health "h" http 5 2 2 3 GET "/$$x$$" "200"`, "show running;"} {
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

// A UDP service gets no TCP check unless its LBRoute asks for one: the
// default becomes ICMP (Array's LBaaS agent's PING form), and the UDP real
// takes the form public scripts send.
func TestUDPHealthAndRealForms(t *testing.T) {
	udp := model.VirtualService{Namespace: "dns", Route: "r", Name: "dns", VIP: netip.MustParseAddr("10.200.0.53"), Port: 53,
		Protocol: model.UDP, Reals: []model.Real{real4("10.203.2.2", 53, 1)}}
	for _, tc := range []struct {
		name   string
		health model.HealthSpec
		want   string // type of the slb health line, "" = none
	}{
		{"no healthCheck", model.DefaultHealth, "icmp"},
		{"healthCheck without type", model.HealthSpec{Type: model.HealthTCP, TypeDefaulted: true, Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}, "icmp"},
		{"explicit TCP", model.HealthSpec{Type: model.HealthTCP, Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}, "tcp"},
		{"None", model.HealthSpec{Type: model.HealthNone}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := udp
			vs.Health = tc.health
			c := mustRender(t, model.State{Services: []model.VirtualService{vs}})
			n := NamesFor(&vs)
			h, ok := c.Healths[n.Health]
			switch {
			case tc.want == "" && ok:
				t.Fatalf("health %+v rendered for None", h)
			case tc.want != "" && (!ok || h.Type != tc.want):
				t.Fatalf("health = %+v (present %v), want type %s", h, ok, tc.want)
			case tc.want != "" && c.Groups[n.Group].Health != n.Health:
				t.Fatalf("group health = %q", c.Groups[n.Group].Health)
			}
			if tc.want == "icmp" && h.createLine() != fmt.Sprintf("slb health %q icmp 5 2 2 3", n.Health) {
				t.Errorf("icmp line = %s", h.createLine())
			}
			r := c.Reals["ea_ru_10.203.2.2_53"]
			if got := r.createLine(); got != `slb real udp "ea_ru_10.203.2.2_53" 10.203.2.2 53 0 3 3 60 none` {
				t.Errorf("udp real = %s", got)
			}
		})
	}
	// A TCP service keeps the TCP default.
	tcp := udp
	tcp.Protocol, tcp.Health = model.TCP, model.DefaultHealth
	c := mustRender(t, model.State{Services: []model.VirtualService{tcp}})
	if h := c.Healths[NamesFor(&tcp).Health]; h.Type != "tcp" {
		t.Errorf("tcp default = %+v", h)
	}
}

// Objects are enabled right after they are complete, as public scripts do;
// a kept object the device lists as disabled is enabled again, nothing
// else is touched.
func TestEnableAfterCreateAndOnDisabled(t *testing.T) {
	want := mustRender(t, sampleState())
	d := Diff(Config{}, want)
	idx := func(l string) int { return slices.Index(d, l) }
	n := NamesFor(&sampleState().Services[0])
	r := "ea_rt_10.244.1.10_8080"
	if !(idx(want.Reals[r].createLine()) >= 0 && idx(enableLine("real", r)) == idx(want.Reals[r].createLine())+1) {
		t.Errorf("real not enabled right after its creation:\n%s", strings.Join(d, "\n"))
	}
	if idx(enableLine("group", n.Group)) < idx(groupHealthLine(n.Group, n.Health)) || idx(enableLine("group", n.Group)) < 0 {
		t.Errorf("group not enabled once complete")
	}
	if v := want.Virtuals[n.Virtual]; idx(enableLine("virtual", n.Virtual)) != idx(v.createLine())+1 {
		t.Errorf("virtual not enabled right after its creation")
	}
	cur, _ := ParseConfig(strings.Join(want.Lines(), "\n") + "\nslb virtual disable \"" + n.Virtual + "\"\nslb real enable \"" + r + "\"\n")
	if got := Diff(cur, want); !slices.Equal(got, []string{enableLine("virtual", n.Virtual)}) {
		t.Errorf("diff of a disabled virtual = %v", got)
	}
}

// An owned line ParseConfig cannot read completely counts as unreadable,
// and what it could read is kept, so the sync replaces the object instead
// of leaving it behind.
func TestParseConfigIncompleteLines(t *testing.T) {
	for _, tc := range []struct {
		line  string
		bad   int
		check func(Config) bool
	}{
		{`slb real tcp "ea_r1" 10.0.0.1`, 1, func(c Config) bool { _, ok := c.Reals["ea_r1"]; return ok }},
		{`slb virtual tcp "ea_v1" 10.0.0.1 http`, 1, func(c Config) bool { _, ok := c.Virtuals["ea_v1"]; return ok }},
		{`slb group member "ea_g1"`, 1, func(c Config) bool { return len(c.Groups) == 0 }},
		{`slb group member "ea_g1" "ea_r1" heavy`, 1, func(c Config) bool {
			g := c.Groups["ea_g1"]
			_, member := g.Members["ea_r1"]
			return g.Method == "rr" && member
		}},
		{`slb group health "ea_g1"`, 1, func(c Config) bool { return len(c.Groups) == 0 }},
		{`slb group health "ea_g1" "ea_h1"`, 0, func(c Config) bool { return c.Groups["ea_g1"].Health == "ea_h1" }},
		{`slb policy default "ea_vs"`, 1, func(c Config) bool { return len(c.Policies) == 0 }},
		{`slb group method "ea_g2"`, 0, func(c Config) bool { return c.Groups["ea_g2"].Method == "rr" }},
		{`slb group method "other" lc`, 0, func(c Config) bool { return len(c.Groups) == 0 }},
		{`slb virtual enable "ea_v1"`, 0, func(c Config) bool { return len(c.Virtuals) == 0 && len(c.Disabled) == 0 }},
		{`slb virtual disable "ea_v1"`, 0, func(c Config) bool { return c.Disabled[Key{"virtual", "ea_v1"}] }},
	} {
		c, bad := ParseConfig(tc.line)
		if bad != tc.bad || !tc.check(c) {
			t.Errorf("ParseConfig(%s): %d unreadable (want %d), config %+v", tc.line, bad, tc.bad, c)
		}
	}
}
