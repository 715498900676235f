package apv

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixture reads apv/testdata/public/<name>: a provenance comment (lines
// starting with '#'), a "---" line, then the device output as published.
func fixture(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "public", name))
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(raw), "\n---\n")
	if !ok || !strings.HasPrefix(head, "# ") || !strings.Contains(head, "Source:") {
		t.Fatalf("%s: needs a '# ... Source: ...' provenance comment, then a --- line", name)
	}
	return body
}

func TestFixtureSLBStatistics(t *testing.T) {
	reals, virtuals := ParseSLBStatistics(fixture(t, "show-statistics-slb-all.txt"))
	wantV := map[string]ServiceStatus{
		"tcp_slb_vs": {Up: true, Connections: 12, HasConns: true},
		"udp_vs_1":   {Up: false, Connections: 0, HasConns: true},
	}
	wantR := map[string]ServiceStatus{
		"tcp_rs_0": {Up: true, Connections: 7, HasConns: true},
		"udp_rs_1": {Up: false, Connections: 0, HasConns: true},
	}
	if !mapsEqual(virtuals, wantV) {
		t.Errorf("virtuals = %+v, want %+v", virtuals, wantV)
	}
	if !mapsEqual(reals, wantR) {
		t.Errorf("reals = %+v, want %+v", reals, wantR)
	}
}

func mapsEqual(a, b map[string]ServiceStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestFixtureCPU(t *testing.T) {
	if got := ParseCPU(fixture(t, "show-statistics-cpu.txt")); math.Abs(got-0.07) > 1e-9 {
		t.Errorf("cpu = %v, want 0.07", got)
	}
	for _, s := range []string{"", "CPU 0: 10%", "Average CPU utilization: 12%"} {
		if got := ParseCPU(s); got != -1 {
			t.Errorf("ParseCPU(%q) = %v: only the published line is read", s, got)
		}
	}
}

func TestFixtureHA(t *testing.T) {
	on := ParseHAConfig(fixture(t, "show-ha-config.txt"))
	if on.Off || len(on.Units) != 2 || on.Units[0] != (HAUnit{"unit_m", netip.MustParseAddr("10.3.0.11")}) || on.Units[1].Name != "unit_s" {
		t.Fatalf("ha config = %+v", on)
	}
	if d := on.Domain(); d != "10.3.0.11,10.3.0.12" {
		t.Errorf("domain = %q", d)
	}
	off := ParseHAConfig(fixture(t, "show-ha-config-off.txt"))
	if !off.Off || len(off.Units) != 2 {
		t.Errorf("ha config off = %+v", off)
	}
	if d := off.Domain(); d != on.Domain() {
		t.Errorf("both units of a pair must give one domain: %q vs %q", d, on.Domain())
	}
	own := ParseIPAddresses(fixture(t, "show-ip-address.txt"))
	if !slices.Equal(own, []netip.Addr{netip.MustParseAddr("10.3.0.11"), netip.MustParseAddr("10.10.11.1")}) {
		t.Errorf("own addresses = %v", own)
	}
	for _, tc := range []struct {
		name, urlHost string
		own           []netip.Addr
		want          string
	}{
		{"unit_s", "", nil, "unit_s"},      // configured
		{"unit_x", "10.3.0.11", own, ""},   // configured but not a unit: unknown, no guess
		{"", "192.0.2.1", own, "unit_m"},   // by the device's own address
		{"", "10.3.0.12", nil, "unit_s"},   // by the URL's host
		{"", "apv-b.example.net", nil, ""}, // nothing matches
	} {
		if got := on.LocalUnit(tc.name, tc.own, tc.urlHost); got != tc.want {
			t.Errorf("LocalUnit(%q, %v, %q) = %q, want %q", tc.name, tc.own, tc.urlHost, got, tc.want)
		}
	}
	up := ParseHADomainStatus(fixture(t, "show-ha-status-domain.txt"), on.Units)
	if !up["unit_m"] || up["unit_s"] || len(up) != 2 {
		t.Errorf("domain status = %v", up)
	}
}

// No public sample of `show ha status` exists: whatever the layout, only a
// line naming the local unit gives its state, and the peer's line never
// does.
func TestHAStatusNeverTakesThePeersState(t *testing.T) {
	out := "Unit Name  Group  State\nunit_s     1      Active\nunit_m     1      Standby\n"
	if got := ParseHAStatus(out, "unit_m"); got != "standby" {
		t.Errorf("local unit_m = %q, want standby (the first line is the peer's)", got)
	}
	if got := ParseHAStatus(out, "unit_s"); got != "active" {
		t.Errorf("unit_s = %q", got)
	}
	if got := ParseHAStatus("Group 1 Active\n", "unit_m"); got != "unknown" {
		t.Errorf("a line without the unit's name = %q, want unknown", got)
	}
	if got := ParseHAStatus("unit_m 1 Standby\nunit_m 2 Active\n", "unit_m"); got != "active" {
		t.Errorf("active for one of two groups = %q, want active", got)
	}
	if got := ParseHAStatus("unit_m2 Active\nunit_m(10.3.0.11): State=Standby\n", "unit_m"); got != "standby" {
		t.Errorf("unit_m beside unit_m2 = %q, want standby", got)
	}
	for s, want := range map[string]bool{"a unit_m b": true, "unit_m": true, "unit_m2": false, "xunit_m": false, "(unit_m)": true, "BACKUP": false} {
		w := "unit_m"
		if s == "BACKUP" {
			w = "UP"
		}
		if got := containsWord(s, w); got != want {
			t.Errorf("containsWord(%q, %q) = %v", s, w, got)
		}
	}
}

func TestFixtureHealthServerAndInterfaces(t *testing.T) {
	hs := ParseHealthServer(fixture(t, "show-health-server.txt"))
	if !hs["rs1"] || hs["rs2"] || len(hs) != 2 {
		t.Errorf("health server = %v", hs)
	}
	ifs := ParseInterfaces(fixture(t, "show-interface.txt"))
	if !ifs["port1"] || ifs["bond1"] || len(ifs) != 2 {
		t.Errorf("interfaces = %v", ifs)
	}
}

func TestFixtureSLBConfig(t *testing.T) {
	c, bad := ParseConfig(fixture(t, "show-slb-config.txt"))
	if bad != 0 {
		t.Fatalf("%d unreadable lines", bad)
	}
	if r := c.Reals["ea_rs1"]; r.Proto != "http" || r.IP.String() != "172.16.0.9" || r.Port != 80 {
		t.Errorf("real = %+v", r)
	}
	if r := c.Reals["ea_urs"]; r.Proto != "udp" || r.Port != 53 {
		t.Errorf("unquoted udp real = %+v", r)
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
	if d := Diff(c, Config{}); !slices.Contains(d, `no slb real http "ea_rs1"`) {
		t.Errorf("diff = %v", d)
	}
}

func TestParseNotAfter(t *testing.T) {
	ts, ok := ParseNotAfter("            Not After : Dec  8 07:00:00 2026 GMT")
	if !ok || !ts.Equal(time.Date(2026, 12, 8, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("not after = %v %v", ts, ok)
	}
	if hosts := ParseSSLHosts("ssl host virtual \"a\" \"vs\"\nssl host virtual b vs2\nssl host virtual \"c;d\" vs\nslb real tcp x 1.1.1.1 1"); !slices.Equal(hosts, []string{"a", "b"}) {
		t.Errorf("ssl hosts = %v", hosts)
	}
}
