package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/arraynetworks/edgeagent/model"
)

// Unit tests of the sync's steps and failure paths, on the fakes
// (fake_test.go). The same behaviours against the kernel are in
// kernel_test.go and steps_test.go.

func syncFake(t *testing.T, d *Dataplane, services ...model.VirtualService) {
	t.Helper()
	if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
}

func failingSteps(d *Dataplane) []string {
	var out []string
	for _, f := range d.Status().Failures {
		out = append(out, f.Step)
	}
	return out
}

func stepMetric(t *testing.T, d *Dataplane, step string) float64 {
	t.Helper()
	return testutil.ToFloat64(d.metrics.failing.WithLabelValues(step))
}

// A first sync creates the link, the addresses and the rules; a second
// changes nothing, and neither does a restarted agent over the same kernel.
func TestFakeSyncIsIdempotentAndAdopts(t *testing.T) {
	k := newFakeKernel()
	d := k.dataplane(Options{Masquerade: true})
	web := vs("s", "web", "10.200.0.1", 80, model.TCP, model.RoundRobin, realV4(1), realV4(2))
	web6 := vs("s", "web6", "fd00:200::1", 80, model.TCP, model.SourceHash, realV6(1))
	syncFake(t, d, web, web6)
	if got := k.nl.vips(DefaultInterface); !slices.Equal(got, []string{"10.200.0.1/32", "fd00:200::1/128"}) {
		t.Fatalf("VIPs = %v", got)
	}
	if p := d.Programmed(); !p[web.Key()] || !p[web6.Key()] {
		t.Fatalf("Programmed = %v", p)
	}
	if k.sys.v[sysctlIPv6Forward] != "1" {
		t.Fatal("an IPv6 service needs IPv6 forwarding")
	}
	want := Render([]model.VirtualService{web, web6}, RenderOptions{Masquerade: true})
	for f, rs := range map[Family]Ruleset{IPv4: want.V4, IPv6: want.V6} {
		for _, table := range tables {
			got := k.ipt.chains(ModeNFT, f, table)
			for c, rules := range rs[table] {
				if !slices.Equal(got[c], rules) {
					t.Fatalf("%s %s %s = %q, want %q", f, table, c, got[c], rules)
				}
			}
		}
	}
	st := d.Status()
	if st.IPTablesMode != ModeNFT || st.InterfaceKind != KindDummy || st.Rules != want.V4.Rules()+want.V6.Rules() || len(st.Failures) != 0 {
		t.Fatalf("status = %+v", st)
	}

	restores, writes, sysWrites := k.ipt.restores, k.nl.writes, k.sys.writes
	syncFake(t, d, web, web6)
	if k.ipt.restores != restores || k.nl.writes != writes {
		t.Fatalf("a repeated sync wrote: %d restores, %d netlink writes", k.ipt.restores-restores, k.nl.writes-writes)
	}
	d2 := k.dataplane(Options{Masquerade: true})
	syncFake(t, d2, web, web6)
	if k.ipt.restores != restores || k.nl.writes != writes || k.sys.writes != sysWrites || d2.netlinkChanges != 0 {
		t.Fatalf("a restarted agent wrote: %d restores, %d netlink writes, %d sysctl writes", k.ipt.restores-restores, k.nl.writes-writes, k.sys.writes-sysWrites)
	}
	if len(d2.Programmed()) != 2 {
		t.Fatalf("adopted Programmed = %v", d2.Programmed())
	}
}

// A restore that fails half way — the filter table committed, the nat
// table refused — keeps the services' previous verdicts and every VIP,
// reports the family's step, and the retry reads the kernel again (rather
// than trust a half-applied state) and converges.
func TestFakeRestoreFailingHalfWay(t *testing.T) {
	k := newFakeKernel()
	d := k.dataplane(Options{Masquerade: true})
	keep := vs("f", "keep", "10.200.0.40", 80, model.TCP, model.RoundRobin, realV4(1))
	old := vs("f", "old", "10.200.0.41", 80, model.TCP, model.RoundRobin, realV4(1))
	syncFake(t, d, keep, old)

	k.ipt.failRestore = func(_ IPTablesMode, f Family, table string) error {
		if f == IPv4 && table == tableNat {
			return errInjected
		}
		return nil
	}
	// new has no eligible real: its reject rule lands in filter (which
	// commits), its dispatch would have been in nat (which does not).
	add := vs("f", "new", "10.200.0.42", 80, model.TCP, model.RoundRobin)
	saves := k.ipt.saves
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{keep, add}})
	if err == nil || !strings.Contains(err.Error(), "apply IPv4 rules") || !errors.Is(err, errInjected) {
		t.Fatalf("Reconcile = %v, want the IPv4 restore's failure", err)
	}
	if slices.ContainsFunc(k.ipt.chains(ModeNFT, IPv4, tableFilter)[chainInput], func(r string) bool { return strings.Contains(r, "10.200.0.42") }) == false {
		t.Fatal("the filter table should have committed before nat failed (a half-applied restore)")
	}
	if p := d.Programmed(); !p[old.Key()] || p[add.Key()] {
		t.Fatalf("Programmed after the failure = %v, want the previous state", p)
	}
	if got := k.nl.vips(DefaultInterface); !slices.Contains(got, "10.200.0.41/32") || !slices.Contains(got, "10.200.0.42/32") {
		t.Fatalf("VIPs after the failure = %v: the old one stays (its rules may still be in force), the new one goes on", got)
	}
	if f := failingSteps(d); !slices.Equal(f, []string{stepRulesV4}) || stepMetric(t, d, stepRulesV4) != 1 {
		t.Fatalf("failing steps = %v", f)
	}
	if st := d.Status(); st.LastError == "" || testutil.ToFloat64(d.metrics.errors) != 1 {
		t.Fatalf("status error %q, errors metric %v", st.LastError, testutil.ToFloat64(d.metrics.errors))
	}

	k.ipt.failRestore = nil
	syncFake(t, d, keep, add)
	if k.ipt.saves == saves {
		t.Fatal("the retry must read the kernel again")
	}
	if p := d.Programmed(); p[old.Key()] || !p[add.Key()] || !p[keep.Key()] {
		t.Fatalf("Programmed after the retry = %v", p)
	}
	if got := k.nl.vips(DefaultInterface); slices.Contains(got, "10.200.0.41/32") {
		t.Fatalf("VIPs after the retry = %v: the old one must come off", got)
	}
	if n := len(d.Status().Failures); n != 0 || stepMetric(t, d, stepRulesV4) != 0 {
		t.Fatalf("failures after the retry: %+v", d.Status().Failures)
	}
	want := Render([]model.VirtualService{keep, add}, RenderOptions{Masquerade: true})
	if k.ipt.edgeChains(ModeNFT, IPv4) != len(want.V4[tableNat])+len(want.V4[tableFilter]) {
		t.Fatalf("chains after the retry: %d, want %d", k.ipt.edgeChains(ModeNFT, IPv4), len(want.V4[tableNat])+len(want.V4[tableFilter]))
	}
}

// A failed step whose retry finds nothing left to write (the kernel already
// holds the wanted rules) is no longer failing.
func TestFakeFailureClearsWhenNothingIsLeftToWrite(t *testing.T) {
	k := newFakeKernel()
	d := k.dataplane(Options{})
	web := vs("c", "web", "10.200.0.50", 80, model.TCP, model.RoundRobin, realV4(1))
	syncFake(t, d, web)
	k.ipt.failRestore = func(IPTablesMode, Family, string) error { return errInjected }
	web2 := web
	web2.Reals = []model.Real{realV4(2)}
	if err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web2}}); err == nil {
		t.Fatal("want the restore to fail")
	}
	k.ipt.failRestore = nil
	restores := k.ipt.restores
	syncFake(t, d, web) // back to what the kernel has
	if k.ipt.restores != restores {
		t.Fatal("nothing to write, yet a restore ran")
	}
	if f := failingSteps(d); len(f) != 0 {
		t.Fatalf("failing steps = %v after a sync that found the kernel right", f)
	}
}

// A VIP that cannot be added fails the addresses step; the rules still go
// in, no VIP comes off in that sync, and the retry reads the link again.
func TestFakeVIPAddFails(t *testing.T) {
	k := newFakeKernel()
	d := k.dataplane(Options{})
	a := vs("v", "a", "10.200.0.60", 80, model.TCP, model.RoundRobin, realV4(1))
	b := vs("v", "b", "10.200.0.61", 80, model.TCP, model.RoundRobin, realV4(1))
	syncFake(t, d, a)
	k.nl.failAddrAdd = func(p netip.Prefix) error {
		if p.Addr() == b.VIP {
			return unix.ENOSPC
		}
		return nil
	}
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{b}})
	if err == nil || !strings.Contains(err.Error(), "add 10.200.0.61/32 to edge-vip0") {
		t.Fatalf("Reconcile = %v, want the address's failure", err)
	}
	if !d.Programmed()[b.Key()] {
		t.Fatal("the rules go in although the address failed")
	}
	if got := k.nl.vips(DefaultInterface); !slices.Equal(got, []string{"10.200.0.60/32"}) {
		t.Fatalf("VIPs = %v: nothing comes off in a sync whose addresses failed", got)
	}
	if f := failingSteps(d); !slices.Equal(f, []string{stepAddresses}) {
		t.Fatalf("failing steps = %v", f)
	}
	since := d.Status().FailingSince
	_ = d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{b}})
	if got := d.Status().FailingSince; !got.Equal(since) {
		t.Fatalf("FailingSince moved on a retry: %v, was %v", got, since)
	}
	k.nl.failAddrAdd = nil
	syncFake(t, d, b)
	if got := k.nl.vips(DefaultInterface); !slices.Equal(got, []string{"10.200.0.61/32"}) {
		t.Fatalf("VIPs after the retry = %v", got)
	}
	if f := failingSteps(d); len(f) != 0 {
		t.Fatalf("failing steps after the retry = %v", f)
	}
}

// ip6tables that cannot be read makes IPv6 services rejected (with the
// reason), not a failing step; IPv4 goes on, and IPv6 forwarding is left
// alone.
func TestFakeUnusableIPv6(t *testing.T) {
	k := newFakeKernel()
	k.ipt.failSave = func(_ IPTablesMode, f Family) error {
		if f == IPv6 {
			return errors.New("exit status 3: can't initialize ip6tables table `nat': Table does not exist")
		}
		return nil
	}
	d := k.dataplane(Options{})
	web := vs("s", "web", "10.200.0.70", 80, model.TCP, model.RoundRobin, realV4(1))
	web6 := vs("s", "web6", "fd00:200::70", 80, model.TCP, model.RoundRobin, realV6(1))
	syncFake(t, d, web, web6)
	if p := d.Programmed(); !p[web.Key()] || p[web6.Key()] {
		t.Fatalf("Programmed = %v", p)
	}
	if err := d.Rejected()[web6.Key()]; err == nil || !strings.Contains(err.Error(), "IPv6 unavailable") {
		t.Fatalf("Rejected = %v", d.Rejected())
	}
	if f := failingSteps(d); len(f) != 0 {
		t.Fatalf("failing steps = %v", f)
	}
	if got := k.nl.vips(DefaultInterface); !slices.Equal(got, []string{"10.200.0.70/32"}) {
		t.Fatalf("VIPs = %v: no address for a service without rules", got)
	}
	if k.sys.v[sysctlIPv6Forward] != "0" {
		t.Fatal("IPv6 forwarding switched on without an IPv6 service programmed")
	}
}

// IPv4 rules that cannot be read fail their step; the VIPs still go on
// (ready for the rules), IPv6 goes on, and nothing comes off.
func TestFakeIPv4RulesUnreadable(t *testing.T) {
	k := newFakeKernel()
	d := k.dataplane(Options{})
	old := vs("r", "old", "10.200.0.80", 80, model.TCP, model.RoundRobin, realV4(1))
	syncFake(t, d, old)
	d.Resync()
	k.ipt.failSave = func(_ IPTablesMode, f Family) error {
		if f == IPv4 {
			return errors.New("exit status 4: another app is currently holding the xtables lock")
		}
		return nil
	}
	web := vs("r", "web", "10.200.0.81", 80, model.TCP, model.RoundRobin, realV4(1))
	web6 := vs("r", "web6", "fd00:200::81", 80, model.TCP, model.RoundRobin, realV6(1))
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web, web6}})
	if err == nil || !strings.Contains(err.Error(), "read IPv4 rules") {
		t.Fatalf("Reconcile = %v", err)
	}
	if f := failingSteps(d); !slices.Equal(f, []string{stepRulesV4}) {
		t.Fatalf("failing steps = %v", f)
	}
	if p := d.Programmed(); !p[old.Key()] || p[web.Key()] || !p[web6.Key()] {
		t.Fatalf("Programmed = %v: IPv4 keeps its previous verdicts, IPv6 goes on", p)
	}
	if got := k.nl.vips(DefaultInterface); !slices.Equal(got, []string{"10.200.0.80/32", "10.200.0.81/32", "fd00:200::81/128"}) {
		t.Fatalf("VIPs = %v", got)
	}
	k.ipt.failSave = nil
	syncFake(t, d, web, web6)
	if got := k.nl.vips(DefaultInterface); !slices.Equal(got, []string{"10.200.0.81/32", "fd00:200::81/128"}) {
		t.Fatalf("VIPs after recovery = %v", got)
	}
	if p := d.Programmed(); p[old.Key()] || !p[web.Key()] {
		t.Fatalf("Programmed after recovery = %v", p)
	}
}

// Neither iptables backend's tools run: the rules step says so, and the
// interface, addresses and sysctl steps still run; once the tools work,
// the backend is chosen and the failure clears.
func TestFakeNoIPTablesTools(t *testing.T) {
	k := newFakeKernel()
	k.ipt.broken[ModeNFT], k.ipt.broken[ModeLegacy] = true, true
	k.sys.v[sysctlIPv4Forward] = "0"
	d := k.dataplane(Options{})
	web := vs("t", "web", "10.200.0.90", 80, model.TCP, model.RoundRobin, realV4(1))
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web}})
	if err == nil || !strings.Contains(err.Error(), "neither backend's tools run") {
		t.Fatalf("Reconcile = %v", err)
	}
	if f := failingSteps(d); !slices.Equal(f, []string{stepRulesV4}) {
		t.Fatalf("failing steps = %v", f)
	}
	if k.sys.v[sysctlIPv4Forward] != "1" || !slices.Equal(k.nl.vips(DefaultInterface), []string{"10.200.0.90/32"}) {
		t.Fatal("forwarding and the VIP must not wait for the iptables tools")
	}
	if st := d.Status(); st.IPTablesMode != "" || d.Programmed()[web.Key()] {
		t.Fatalf("mode %q, programmed %v before any backend works", st.IPTablesMode, d.Programmed())
	}
	k.ipt.broken[ModeLegacy] = false
	syncFake(t, d, web)
	if st := d.Status(); st.IPTablesMode != ModeLegacy || len(st.Failures) != 0 || !d.Programmed()[web.Key()] {
		t.Fatalf("after the tools came: %+v", st)
	}
	if v := testutil.ToFloat64(d.metrics.mode.WithLabelValues("legacy")); v != 1 {
		t.Fatalf("mode metric = %v", v)
	}
}

// Forwarding off on a read-only /proc/sys fails the sysctl step and nothing
// else; the status shows what the node has; the retry after the fix clears
// it.
func TestFakeSysctlReadOnly(t *testing.T) {
	k := newFakeKernel()
	k.sys.v[sysctlIPv4Forward] = "0"
	k.sys.readOnly = true
	d := k.dataplane(Options{})
	web := vs("s", "web", "10.200.0.100", 80, model.TCP, model.RoundRobin, realV4(1))
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web}})
	if err == nil || !strings.Contains(err.Error(), "set sysctl net.ipv4.ip_forward=1 (it is 0)") || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("Reconcile = %v", err)
	}
	if !d.Programmed()[web.Key()] || len(k.nl.vips(DefaultInterface)) != 1 {
		t.Fatal("VIP and rules go in although forwarding is off")
	}
	st := d.Status()
	if !slices.Equal(failingSteps(d), []string{stepSysctl}) || st.Sysctls[sysctlIPv4Forward] != "0" || stepMetric(t, d, stepSysctl) != 1 {
		t.Fatalf("status = %+v", st)
	}
	// Retried at every sync until it works, failing since the first time.
	since := st.FailingSince
	_ = d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web}})
	if st := d.Status(); !slices.Equal(failingSteps(d), []string{stepSysctl}) || !st.FailingSince.Equal(since) {
		t.Fatalf("after a retry: %+v", st)
	}
	k.sys.v[sysctlIPv4Forward] = "1" // prepare-node, or an operator
	syncFake(t, d, web)
	if st := d.Status(); len(st.Failures) != 0 || st.Sysctls[sysctlIPv4Forward] != "1" {
		t.Fatalf("after the fix: %+v", st)
	}
}

// An interface of the agent's name that is not the agent's (a veth) is
// refused and left alone; the rules still go in, the addresses wait.
func TestFakeForeignInterface(t *testing.T) {
	k := newFakeKernel()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = DefaultInterface
	k.nl.addLink(&netlink.Veth{LinkAttrs: attrs})
	d := k.dataplane(Options{})
	web := vs("i", "web", "10.200.0.110", 80, model.TCP, model.RoundRobin, realV4(1))
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web}})
	if err == nil || !strings.Contains(err.Error(), `type "veth", not dummy or bridge`) {
		t.Fatalf("Reconcile = %v", err)
	}
	if !slices.Equal(failingSteps(d), []string{stepInterface}) || !d.Programmed()[web.Key()] {
		t.Fatalf("failing %v, programmed %v", failingSteps(d), d.Programmed())
	}
	if len(k.nl.vips(DefaultInterface)) != 0 || k.nl.writes != 0 {
		t.Fatal("the foreign link was changed")
	}
	// Cleanup leaves it alone too, and says so.
	if err := d.Cleanup(context.Background()); err == nil || !strings.Contains(err.Error(), "not the agent's, left alone") {
		t.Fatalf("Cleanup = %v", err)
	}
	if _, err := k.nl.LinkByName(DefaultInterface); err != nil {
		t.Fatal("cleanup deleted a foreign link")
	}
}

// Without the dummy driver the VIPs go on a bridge with no ports; a bridge
// with ports is not the agent's.
func TestFakeBridgeInterface(t *testing.T) {
	k := newFakeKernel()
	k.nl.noDummy = true
	d := k.dataplane(Options{})
	web := vs("b", "web", "10.200.0.120", 80, model.TCP, model.RoundRobin, realV4(1))
	syncFake(t, d, web)
	if st := d.Status(); st.InterfaceKind != KindBridge || !slices.Equal(k.nl.vips(DefaultInterface), []string{"10.200.0.120/32"}) {
		t.Fatalf("status %+v, VIPs %v", st, k.nl.vips(DefaultInterface))
	}
	br, _ := k.nl.LinkByName(DefaultInterface)
	if br.Attrs().RawFlags&unix.IFF_UP == 0 || br.Attrs().RawFlags&unix.IFF_NOARP == 0 {
		t.Fatal("the VIP link must be up with ARP off")
	}
	port := netlink.NewLinkAttrs()
	port.Name, port.MasterIndex = "port0", br.Attrs().Index
	k.nl.addLink(&netlink.Veth{LinkAttrs: port})
	d.Resync()
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web}})
	if err == nil || !strings.Contains(err.Error(), "bridge with 1 ports") {
		t.Fatalf("Reconcile with a port on the bridge = %v", err)
	}
}

// Cleanup removes the agent's chains and jumps from both backends, its
// link and its routes, and nothing else; a second run finds nothing.
func TestFakeCleanup(t *testing.T) {
	k := newFakeKernel()
	d := k.dataplane(Options{Masquerade: true})
	syncFake(t, d, vs("c", "web", "10.200.0.130", 80, model.TCP, model.RoundRobin, realV4(1)),
		vs("c", "web6", "fd00:200::130", 80, model.UDP, model.RoundRobin))
	k.ipt.run(t, ModeNFT, IPv4, tableNat, "-A PREROUTING -p tcp --dport 9999 -j DNAT --to-destination 10.97.11.2:8080")
	k.ipt.run(t, ModeLegacy, IPv4, tableNat, ":EDGE-SERVICES - [0:0]", "-I PREROUTING 1 -j EDGE-SERVICES") // left by an earlier backend
	if err := d.Routes().Replace(netip.MustParsePrefix("10.244.9.0/24"), []netip.Addr{netip.MustParseAddr("10.97.11.2")}); err != nil {
		t.Fatal(err)
	}
	foreign := netlink.Route{Dst: ipNet(netip.MustParsePrefix("10.250.0.0/24")), Protocol: unix.RTPROT_BOOT}
	k.nl.routes = append(k.nl.routes, foreign)

	// Detected nft; a cleanup by a new process (auto) cleans both backends.
	clean := k.dataplane(Options{})
	if err := clean.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range []IPTablesMode{ModeNFT, ModeLegacy} {
		for _, f := range []Family{IPv4, IPv6} {
			if n := k.ipt.edgeChains(m, f); n != 0 {
				t.Fatalf("%s %s: %d EDGE- chains left", m, f, n)
			}
			for _, table := range tables {
				for c, rules := range k.ipt.chains(m, f, table) {
					for _, r := range rules {
						if strings.Contains(r, ChainPrefix) {
							t.Fatalf("%s %s %s %s: %q left", m, f, table, c, r)
						}
					}
				}
			}
		}
	}
	if pre := k.ipt.chains(ModeNFT, IPv4, tableNat)["PREROUTING"]; len(pre) != 1 || !strings.Contains(pre[0], "--dport 9999") {
		t.Fatalf("foreign rule gone: %q", pre)
	}
	if _, err := k.nl.LinkByName(DefaultInterface); err == nil {
		t.Fatal("VIP interface left")
	}
	if len(k.nl.routes) != 1 || k.nl.routes[0].Protocol != unix.RTPROT_BOOT {
		t.Fatalf("routes = %v, want the foreign one only", k.nl.routes)
	}
	restores := k.ipt.restores
	if err := clean.Cleanup(context.Background()); err != nil || k.ipt.restores != restores {
		t.Fatalf("second cleanup: %v, %d restores", err, k.ipt.restores-restores)
	}
	// The dataplane that programmed it all starts from the kernel again.
	if err := d.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(d.Programmed()) != 0 || d.Rejected() != nil {
		t.Fatalf("after cleanup: programmed %v, rejected %v", d.Programmed(), d.Rejected())
	}
}

// Cleanup with no backend's tools working says so.
func TestFakeCleanupWithoutTools(t *testing.T) {
	k := newFakeKernel()
	k.ipt.broken[ModeNFT], k.ipt.broken[ModeLegacy] = true, true
	err := k.dataplane(Options{}).Cleanup(context.Background())
	if err == nil || !strings.Contains(err.Error(), "read nft IPv4 rules") || !strings.Contains(err.Error(), "read legacy IPv4 rules") {
		t.Fatalf("Cleanup = %v", err)
	}
	// One backend is enough.
	k.ipt.broken[ModeNFT] = false
	if err := k.dataplane(Options{}).Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A UDP real that leaves has its conntrack entries deleted (and only UDP,
// and only that real's); a TCP real's connections drain.
func TestFakeConntrackOfDepartedUDPReal(t *testing.T) {
	k := newFakeKernel()
	d := k.dataplane(Options{})
	dns := vs("u", "dns", "10.200.0.140", 53, model.UDP, model.RoundRobin, realV4(1), realV4(2))
	web := vs("u", "web", "10.200.0.140", 80, model.TCP, model.RoundRobin, realV4(1), realV4(2))
	syncFake(t, d, dns, web)
	if len(k.nl.conntrack) != 0 {
		t.Fatal("nothing left, nothing to delete")
	}
	dns.Reals[1].Healthy = false
	web.Reals[1].Healthy = false
	syncFake(t, d, dns, web)
	if len(k.nl.conntrack) != 1 || len(k.nl.conntrack[0].filters) != 1 || k.nl.conntrack[0].family != netlink.FAMILY_V4 {
		t.Fatalf("conntrack deletions = %+v, want one IPv4 filter", k.nl.conntrack)
	}
	f := k.nl.conntrack[0].filters[0]
	flow := func(proto uint8, vip string, vport uint16, real string, rport uint16) *netlink.ConntrackFlow {
		return &netlink.ConntrackFlow{
			Forward: netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP("10.97.1.2"), DstIP: net.ParseIP(vip), SrcPort: 40000, DstPort: vport},
			Reverse: netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP(real), DstIP: net.ParseIP("10.97.1.2"), SrcPort: rport, DstPort: 40000},
		}
	}
	for _, c := range []struct {
		flow *netlink.ConntrackFlow
		want bool
	}{
		{flow(unix.IPPROTO_UDP, "10.200.0.140", 53, "10.97.12.2", 8080), true},  // to the real that left
		{flow(unix.IPPROTO_UDP, "10.200.0.140", 53, "10.97.11.2", 8080), false}, // to the one that stays
		{flow(unix.IPPROTO_TCP, "10.200.0.140", 53, "10.97.12.2", 8080), false}, // TCP drains
		{flow(unix.IPPROTO_UDP, "10.200.0.141", 53, "10.97.12.2", 8080), false}, // another VIP
	} {
		if got := f.MatchConntrackFlow(c.flow); got != c.want {
			t.Errorf("filter on %+v = %v, want %v", c.flow.Forward, got, c.want)
		}
	}
}

// go-iptables' check of the chosen backend runs after each read of the
// kernel (start, resync), not on every sync; tools that do not see the
// agent's rules fail the family's step.
func TestFakeRuleCheck(t *testing.T) {
	k := newFakeKernel()
	d := k.dataplane(Options{})
	web := vs("g", "web", "10.200.0.150", 80, model.TCP, model.RoundRobin, realV4(1))
	syncFake(t, d, web)
	if k.check.checks != 2 { // IPv4 and IPv6
		t.Fatalf("%d checks at start, want 2", k.check.checks)
	}
	syncFake(t, d, web)
	if k.check.checks != 2 {
		t.Fatalf("%d checks after a second sync, want still 2", k.check.checks)
	}
	k.check.blind = true
	d.Resync()
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web}})
	if err == nil || !strings.Contains(err.Error(), "iptables-nft does not see the jump from nat PREROUTING into EDGE-SERVICES") {
		t.Fatalf("Reconcile with blind tools = %v", err)
	}
	if f := failingSteps(d); !slices.Equal(f, []string{stepRulesV4, stepRulesV6}) {
		t.Fatalf("failing steps = %v", f)
	}
	k.check.blind = false
	syncFake(t, d, web) // read again after the failure, checked again
	if f := failingSteps(d); len(f) != 0 {
		t.Fatalf("failing steps = %v", f)
	}
}

func TestRuleArgs(t *testing.T) {
	for _, j := range allJumps {
		args := ruleArgs(j)
		if args[0] != "-m" || args[1] != "comment" || args[2] != "--comment" || !strings.HasPrefix(args[3], "edgeagent: ") ||
			args[4] != "-j" || !strings.HasPrefix(args[5], ChainPrefix) || len(args) != 6 {
			t.Errorf("ruleArgs(%q) = %q", j.rule, args)
		}
	}
}

// Backend detection, as on nodes: kubelet's hint chain in one backend wins
// over rule counts; without it, the backend with more rules; nft on a tie.
func TestFakeDetectIPTablesMode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(x *fakeIPTables)
		want  IPTablesMode
		why   string
	}{
		{name: "empty", setup: func(*fakeIPTables) {}, want: ModeNFT, why: "no kubelet chains; nft holds 0 rules, legacy 0"},
		{name: "hint in legacy v6", want: ModeLegacy, why: "kubelet's KUBE-IPTABLES-HINT chain is in the legacy IPv6 mangle table",
			setup: func(x *fakeIPTables) {
				x.run(t, ModeLegacy, IPv6, "mangle", ":KUBE-IPTABLES-HINT - [0:0]")
				x.run(t, ModeNFT, IPv4, "filter", "-A INPUT -j ACCEPT", "-A INPUT -j DROP")
			}},
		{name: "canary only", want: ModeNFT, why: "KUBE-KUBELET-CANARY chain is in the nft IPv4",
			setup: func(x *fakeIPTables) {
				x.run(t, ModeNFT, IPv4, "mangle", ":KUBE-KUBELET-CANARY - [0:0]")
				x.run(t, ModeLegacy, IPv4, "filter", "-A INPUT -j ACCEPT")
			}},
		{name: "more legacy rules", want: ModeLegacy, why: "legacy holds 2 rules, nft 1",
			setup: func(x *fakeIPTables) {
				x.run(t, ModeLegacy, IPv4, "filter", "-A INPUT -j ACCEPT", "-A FORWARD -j ACCEPT")
				x.run(t, ModeNFT, IPv6, "filter", "-A INPUT -j ACCEPT")
			}},
		{name: "legacy tools missing", want: ModeNFT, why: "only the nft tools run (legacy: iptables-legacy-save: exec",
			setup: func(x *fakeIPTables) { x.broken[ModeLegacy] = true }},
		{name: "nft tools missing, even with more nft rules elsewhere", want: ModeLegacy, why: "only the legacy tools run",
			setup: func(x *fakeIPTables) { x.broken[ModeNFT] = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newFakeIPTables()
			tc.setup(x)
			got, why, err := detectIPTablesMode(context.Background(), x)
			if err != nil || got != tc.want || !strings.Contains(why, tc.why) {
				t.Fatalf("detect = %s (%q) %v, want %s (%q)", got, why, err, tc.want, tc.why)
			}
		})
	}
}

// A configured backend is used without detection, and shows in status and
// the metric from the start.
func TestFakeConfiguredMode(t *testing.T) {
	k := newFakeKernel()
	k.ipt.run(t, ModeNFT, IPv4, "mangle", ":KUBE-IPTABLES-HINT - [0:0]")
	d := k.dataplane(Options{IPTablesMode: ModeLegacy})
	if st := d.Status(); st.IPTablesMode != ModeLegacy || !strings.Contains(st.IPTablesModeReason, "configuration") {
		t.Fatalf("status before the first sync = %+v", st)
	}
	if v := testutil.ToFloat64(d.metrics.mode.WithLabelValues("legacy")); v != 1 {
		t.Fatalf("mode metric = %v", v)
	}
	syncFake(t, d, vs("m", "web", "10.200.0.160", 80, model.TCP, model.RoundRobin, realV4(1)))
	if k.ipt.edgeChains(ModeLegacy, IPv4) == 0 || k.ipt.edgeChains(ModeNFT, IPv4) != 0 {
		t.Fatal("rules must go to the configured backend only")
	}
}

// fakeRules is a rules backend of the simplest kind: it programs every
// service and holds nothing in the kernel. It shows what the Dataplane
// expects of any backend (the nftables one plugs in the same way).
type fakeRules struct {
	steps     map[string]error // what Apply reports
	planSteps map[string]error
	vips      map[netip.Prefix]int
	touched   map[netip.Prefix]bool
	services  []model.VirtualService
	applies   int
	resyncs   int
	// cleanups counts Cleanup calls, which return cleanupErr.
	cleanups   int
	cleanupErr error
}

func (f *fakeRules) Steps() []string { return []string{"nftables"} }
func (f *fakeRules) Plan(_ context.Context, services []model.VirtualService) RulesPlan {
	f.services = services
	vips, v6 := map[netip.Prefix]int{}, false
	for _, vs := range services {
		p := netip.PrefixFrom(vs.VIP, vs.VIP.BitLen())
		vips[p]++
		v6 = v6 || vs.VIP.Is6()
	}
	f.touched = map[netip.Prefix]bool{}
	for p := range vips {
		if vips[p] != f.vips[p] {
			f.touched[p] = true
		}
	}
	for p := range f.vips {
		if vips[p] == 0 {
			f.touched[p] = true
		}
	}
	f.vips = vips
	return RulesPlan{Steps: f.planSteps, VIPs: f.vips, Touched: f.touched, IPv6: v6}
}
func (f *fakeRules) Apply(context.Context) map[string]error {
	f.applies++
	if f.steps == nil {
		return map[string]error{"nftables": nil}
	}
	return f.steps
}
func (f *fakeRules) Resync() { f.resyncs++ }
func (f *fakeRules) Programmed() map[string]bool {
	out := map[string]bool{}
	for _, vs := range f.services {
		out[vs.Key()] = true
	}
	return out
}
func (f *fakeRules) Rejected() map[string]error {
	return map[string]error{"n/bad/TCP/1": errors.New("bad")}
}
func (f *fakeRules) Status() RulesStatus {
	return RulesStatus{Services: len(f.services), Rules: 7 * len(f.services)}
}
func (f *fakeRules) Cleanup(context.Context) error {
	f.cleanups++
	return f.cleanupErr
}

// The backend not in use is cleaned up only after a sync in which the one
// in use programmed everything (a node switching backends keeps serving
// from the old objects until then), once per start and Resync; a failure
// is a warning in Status, retried by the next sync, and not a step
// failure.
func TestRemoveOtherBackend(t *testing.T) {
	k := newFakeKernel()
	r, other := &fakeRules{}, &fakeRules{}
	d := newDataplane(withDefaults(Options{}), seams{links: k.nl, routes: k.nl, sysctl: k.sys, rules: r, other: other})
	a := vs("n", "a", "10.200.0.171", 80, model.TCP, model.RoundRobin, realV4(1))
	r.steps = map[string]error{"nftables": errInjected}
	if err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{a}}); !errors.Is(err, errInjected) {
		t.Fatalf("Reconcile = %v", err)
	}
	if other.cleanups != 0 {
		t.Fatal("the other backend was cleaned up while the one in use failed")
	}
	r.steps = nil
	other.cleanupErr = errInjected
	syncFake(t, d, a)
	if other.cleanups != 1 || len(failingSteps(d)) != 0 {
		t.Fatalf("cleanups %d, failing %v", other.cleanups, failingSteps(d))
	}
	if w := d.Status().Warnings; len(w) != 1 || !strings.Contains(w[0], "remain") || testutil.ToFloat64(d.metrics.warnings) != 1 {
		t.Fatalf("warnings %q (metric %v), want the leftovers named", w, testutil.ToFloat64(d.metrics.warnings))
	}
	other.cleanupErr = nil
	syncFake(t, d, a)
	syncFake(t, d, a)
	if other.cleanups != 2 || len(d.Status().Warnings) != 0 || testutil.ToFloat64(d.metrics.warnings) != 0 {
		t.Fatalf("cleanups %d (want the retry, then none), warnings %q", other.cleanups, d.Status().Warnings)
	}
	d.Resync()
	syncFake(t, d, a)
	if other.cleanups != 3 {
		t.Fatalf("cleanups %d: a resync looks again", other.cleanups)
	}
	if err := d.Cleanup(context.Background()); err != nil || other.cleanups != 4 {
		t.Fatalf("Cleanup = %v, other cleanups %d: cleanup removes both backends' objects", err, other.cleanups)
	}
}

// Another rules backend plugs in through Options.Rules: its steps are the
// Dataplane's, addresses follow its plan and come off only when its steps
// succeed, and its status and rejections are shown.
func TestOtherRulesBackend(t *testing.T) {
	k := newFakeKernel()
	r := &fakeRules{}
	opt := withDefaults(Options{Rules: r})
	d := newDataplane(opt, seams{links: k.nl, routes: k.nl, sysctl: k.sys, rules: r})
	a := vs("n", "a", "10.200.0.170", 80, model.TCP, model.RoundRobin, realV4(1))
	b6 := vs("n", "b", "fd00:200::170", 80, model.TCP, model.RoundRobin, realV6(1))
	syncFake(t, d, a, b6)
	if got := k.nl.vips(DefaultInterface); !slices.Equal(got, []string{"10.200.0.170/32", "fd00:200::170/128"}) {
		t.Fatalf("VIPs = %v", got)
	}
	if k.sys.v[sysctlIPv6Forward] != "1" {
		t.Fatal("IPv6 forwarding for the planned IPv6 service")
	}
	st := d.Status()
	if st.Rules != 14 || st.IPTablesMode != "" || len(d.Rejected()) != 1 || !d.Programmed()[a.Key()] {
		t.Fatalf("status %+v, rejected %v", st, d.Rejected())
	}
	if testutil.ToFloat64(d.metrics.services) != 2 || stepMetric(t, d, "nftables") != 0 {
		t.Fatal("metrics from the backend's status")
	}
	r.steps = map[string]error{"nftables": fmt.Errorf("write table inet edgeagent: %w", errInjected)}
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{b6}})
	if !errors.Is(err, errInjected) || !slices.Equal(failingSteps(d), []string{"nftables"}) || stepMetric(t, d, "nftables") != 1 {
		t.Fatalf("Reconcile = %v, failing %v", err, failingSteps(d))
	}
	if got := k.nl.vips(DefaultInterface); len(got) != 2 {
		t.Fatalf("VIPs = %v: none comes off while the backend fails", got)
	}
	r.steps = nil
	syncFake(t, d, b6)
	if got := k.nl.vips(DefaultInterface); !slices.Equal(got, []string{"fd00:200::170/128"}) {
		t.Fatalf("VIPs after recovery = %v", got)
	}
	d.Resync()
	if r.resyncs != 1 {
		t.Fatal("Resync reaches the backend")
	}
	// A plan step (reading the backend's kernel objects) that fails counts
	// the same.
	r.planSteps = map[string]error{"nftables": errInjected}
	if err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{b6}}); !errors.Is(err, errInjected) {
		t.Fatalf("Reconcile = %v", err)
	}
}

// The route table's logic on the fake (the kernel test is
// routes_test.go): ECMP next hops sorted, a route at an old metric moved,
// another daemon's preferred route named, a missing route's delete quiet.
func TestFakeRouteTable(t *testing.T) {
	nl := newFakeNetlink()
	rt := newRouteTable(nl, 0)
	a, b := netip.MustParseAddr("10.98.0.3"), netip.MustParseAddr("10.98.0.2")
	block, old := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.2.0/24")
	if err := rt.Replace(block, []netip.Addr{a, b}); err != nil {
		t.Fatal(err)
	}
	nl.routes = append(nl.routes, netlink.Route{Dst: ipNet(old), Gw: b.AsSlice(), Protocol: RouteProtocol, Priority: 0})
	got, err := rt.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[block], []netip.Addr{b, a}) || !slices.Equal(got[old], []netip.Addr{b}) || len(got) != 2 {
		t.Fatalf("List = %v", got)
	}
	for _, r := range nl.routes {
		if r.Priority != DefaultRouteMetric {
			t.Fatalf("route %s left at metric %d", r.Dst, r.Priority)
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "tunl0"
	tunl := &netlink.Dummy{LinkAttrs: attrs}
	nl.addLink(tunl)
	nl.routes = append(nl.routes, netlink.Route{Dst: ipNet(block), LinkIndex: tunl.Index, Protocol: unix.RTPROT_BIRD, Priority: 32})
	pref, err := rt.Preferred([]netip.Prefix{block, old})
	if err != nil {
		t.Fatal(err)
	}
	if len(pref) != 1 || pref[block] != "bird metric 32 dev tunl0" {
		t.Fatalf("Preferred = %v", pref)
	}
	if err := rt.Replace(old, nil); err != nil { // no next hops: gone
		t.Fatal(err)
	}
	if err := rt.Delete(old); err != nil {
		t.Fatalf("deleting a missing route: %v", err)
	}
	if got, _ := rt.List(); len(got) != 1 {
		t.Fatalf("List after delete = %v", got)
	}
}

func TestParseIPTablesMode(t *testing.T) {
	for in, want := range map[string]IPTablesMode{"": ModeAuto, "auto": ModeAuto, "nft": ModeNFT, "legacy": ModeLegacy} {
		if got, err := ParseIPTablesMode(in); err != nil || got != want {
			t.Errorf("ParseIPTablesMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseIPTablesMode("nf_tables"); err == nil || !strings.Contains(err.Error(), "not auto, nft or legacy") {
		t.Errorf("ParseIPTablesMode(nf_tables) = %v", err)
	}
}
