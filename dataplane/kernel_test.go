package dataplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/model"
)

// bed is a small network: a client namespace routed through an edge
// namespace (where the dataplane runs) to real-server namespaces, each
// running a serve helper named r<i> on port 8080.
//
//	client 10.97.1.2-.40, fd97:1::2 ── edge 10.97.1.1, fd97:1::1
//	edge 10.97.1<i>.1, fd97:1<i>::1 ── real i 10.97.1<i>.2, fd97:1<i>::2
type bed struct {
	client, edge *testns.NS
	reals        []*testns.NS
	srcs         []string // client source addresses
	// backend is the rules backend b.dataplane builds.
	backend Backend
}

func newBed(t *testing.T, nReals int) *bed {
	t.Helper()
	b := &bed{client: testns.New(t, "cl"), edge: testns.New(t, "ed")}
	link := func(a *testns.NS, devA string, b *testns.NS, devB string, v4a, v4b, v6a, v6b string) {
		testns.Veth(t, a, devA, v4a, b, devB, v4b)
		a.MustRun("ip", "addr", "add", v6a, "dev", devA, "nodad")
		b.MustRun("ip", "addr", "add", v6b, "dev", devB, "nodad")
	}
	link(b.edge, "e0", b.client, "c0", "10.97.1.1/24", "10.97.1.2/24", "fd97:1::1/64", "fd97:1::2/64")
	b.srcs = []string{"10.97.1.2"}
	for i := 3; i <= 26; i++ {
		a := fmt.Sprintf("10.97.1.%d", i)
		b.client.MustRun("ip", "addr", "add", a+"/24", "dev", "c0")
		b.srcs = append(b.srcs, a)
	}
	b.client.MustRun("ip", "route", "add", "default", "via", "10.97.1.1")
	b.client.MustRun("ip", "-6", "route", "add", "default", "via", "fd97:1::1")
	for i := 1; i <= nReals; i++ {
		r := testns.New(t, fmt.Sprintf("r%d", i))
		link(b.edge, fmt.Sprintf("r%d", i), r, "eth0",
			fmt.Sprintf("10.97.1%d.1/24", i), fmt.Sprintf("10.97.1%d.2/24", i),
			fmt.Sprintf("fd97:1%d::1/64", i), fmt.Sprintf("fd97:1%d::2/64", i))
		// Replies route back through the edge, so the test also works
		// without masquerading.
		r.MustRun("ip", "route", "add", "default", "via", fmt.Sprintf("10.97.1%d.1", i))
		r.MustRun("ip", "-6", "route", "add", "default", "via", fmt.Sprintf("fd97:1%d::1", i))
		startServer(t, r.Name, fmt.Sprintf("r%d", i), 8080)
		b.reals = append(b.reals, r)
	}
	return b
}

func (b *bed) dataplane(t *testing.T, masquerade bool) *Dataplane {
	return New(b.options(t, masquerade))
}

// options are the Options of a Dataplane on the edge namespace with the
// bed's backend.
func (b *bed) options(t *testing.T, masquerade bool) Options {
	return Options{Backend: b.backend, Masquerade: masquerade, Netlink: b.edge.Handle(), NetNS: edgeNetNS(t, b.edge),
		CommandPrefix: []string{"ip", "netns", "exec", b.edge.Name}}
}

// edgeNetNS opens the namespace for the nftables backend (it programs the
// namespace by netlink, as the iptables backend does through the command
// prefix); closed when the test ends.
func edgeNetNS(t *testing.T, ns *testns.NS) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatalf("open netns %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// backends are the rules backends every kernel test runs against.
var backends = []Backend{BackendIPTables, BackendNFTables}

// forEachBackend runs test once per rules backend, on a fresh bed of
// nReals reals.
func forEachBackend(t *testing.T, nReals int, test func(t *testing.T, b *bed)) {
	for _, be := range backends {
		t.Run(string(be), func(t *testing.T) {
			b := newBed(t, nReals)
			b.backend = be
			test(t, b)
		})
	}
}

// writes counts the kernel transactions d's rules backend wrote
// (iptables-restore runs, nftables batches).
func writes(d *Dataplane) int { return d.rules.Status().Writes }

// rulesState is what the bed's backend holds in the kernel: the iptables
// rules of both families (without counters), or the agent's nftables
// table.
func (b *bed) rulesState(t *testing.T) string {
	t.Helper()
	if b.backend == BackendNFTables {
		return nftState(t, b.edge)
	}
	return iptablesState(t, b.edge)
}

// nftState lists the agent's table ("" when absent).
func nftState(t *testing.T, ns *testns.NS) string {
	t.Helper()
	out, err := ns.Run("nft", "list", "table", "inet", "edgeagent")
	if err != nil {
		if strings.Contains(out, "No such file or directory") {
			return ""
		}
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return out
}

// realV4 is real i's (1-based) IPv4 endpoint.
func realV4(i int) model.Real { return real(fmt.Sprintf("10.97.1%d.2:8080", i), 1) }
func realV6(i int) model.Real { return real(fmt.Sprintf("[fd97:1%d::2]:8080", i), 1) }

func names(res []probeResult) []string {
	out := make([]string, len(res))
	for i, r := range res {
		out[i] = r.Name
		if r.Err != "" {
			out[i] = "error: " + r.Err
		}
	}
	return out
}

func counts(res []probeResult) map[string]int {
	out := map[string]int{}
	for _, n := range names(res) {
		out[n]++
	}
	return out
}

func reconcile(t *testing.T, d *Dataplane, services ...model.VirtualService) {
	t.Helper()
	if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
}

// assertCycle checks that names repeat with period p and that every window
// of p consecutive requests hits each real exactly as often as want says.
func assertCycle(t *testing.T, what string, got []string, want map[string]int) {
	t.Helper()
	p := 0
	for _, n := range want {
		p += n
	}
	for i := p; i < len(got); i++ {
		if got[i] != got[i-p] {
			t.Fatalf("%s: not a cycle of %d: %v", what, p, got)
		}
	}
	window := map[string]int{}
	for _, n := range got[:p] {
		window[n]++
	}
	for n, c := range want {
		if window[n] != c {
			t.Fatalf("%s: one cycle gave %v, want %v (sequence %v)", what, window, want, got)
		}
	}
}

func TestPolicies(t *testing.T) { forEachBackend(t, 3, testPolicies) }

func testPolicies(t *testing.T, b *bed) {
	// A hardened edge: forwarding dropped unless accepted; EDGE-FORWARD
	// must let load-balanced connections through. The nftables backend
	// cannot override another table's drop (a drop in any base chain is
	// final): it says so in Status, and the test then lifts the drop.
	b.edge.MustRun("iptables", "-P", "FORWARD", "DROP")
	b.edge.MustRun("ip6tables", "-P", "FORWARD", "DROP")
	d := b.dataplane(t, true)
	if b.backend == BackendNFTables {
		reconcile(t, d)
		if w := d.Status().Warnings; len(w) == 0 || !strings.Contains(strings.Join(w, "\n"), "policy drop at the forward hook") || testutil.ToFloat64(d.metrics.warnings) == 0 {
			t.Fatalf("nftables under a forward drop: warnings %q, want the drop named (and counted in edgeagent_dataplane_warnings)", w)
		}
		b.edge.MustRun("iptables", "-P", "FORWARD", "ACCEPT")
		b.edge.MustRun("ip6tables", "-P", "FORWARD", "ACCEPT")
		d.Resync()
		reconcile(t, d)
		if w := d.Status().Warnings; len(w) != 0 {
			t.Fatalf("warnings after the drop went: %q", w)
		}
	}
	wrr := vs("p", "wrr", "10.200.0.11", 80, model.TCP, model.WeightedRoundRobin, realV4(1), realV4(2), realV4(3))
	wrr.Reals[0].Weight, wrr.Reals[1].Weight, wrr.Reals[2].Weight = 3, 2, 1
	reconcile(t, d,
		vs("p", "rr", "10.200.0.10", 80, model.TCP, model.RoundRobin, realV4(1), realV4(2), realV4(3)),
		vs("p", "rr-udp", "10.200.0.10", 53, model.UDP, model.RoundRobin, realV4(1), realV4(2), realV4(3)),
		wrr,
		vs("p", "random", "10.200.0.12", 80, model.TCP, model.Random, realV4(1), realV4(2), realV4(3)),
		vs("p", "sh", "10.200.0.13", 80, model.TCP, model.SourceHash, realV4(1), realV4(2), realV4(3)),
		vs("p", "rr6", "fd00:200::10", 80, model.TCP, model.RoundRobin, realV6(1), realV6(2)),
	)
	one := []string{""}
	t.Run("rr", func(t *testing.T) {
		res := runProbe(t, b.client.Name, "tcp", "10.200.0.10:80", 30, one, 0)
		assertCycle(t, "rr tcp", names(res), map[string]int{"r1": 1, "r2": 1, "r3": 1})
		// Masquerade is on: the real sees the edge's address, not the client.
		for _, r := range res {
			if !strings.HasPrefix(r.Peer, "10.97.1"+r.Name[1:]+".1:") {
				t.Fatalf("real %s saw peer %s, want the edge's address (masquerade)", r.Name, r.Peer)
			}
		}
	})
	t.Run("rr-udp", func(t *testing.T) {
		res := runProbe(t, b.client.Name, "udp", "10.200.0.10:53", 12, one, 0)
		assertCycle(t, "rr udp", names(res), map[string]int{"r1": 1, "r2": 1, "r3": 1})
	})
	t.Run("wrr", func(t *testing.T) {
		res := runProbe(t, b.client.Name, "tcp", "10.200.0.11:80", 60, one, 0)
		assertCycle(t, "wrr", names(res), map[string]int{"r1": 3, "r2": 2, "r3": 1})
	})
	t.Run("random", func(t *testing.T) {
		const n = 300
		c := counts(runProbe(t, b.client.Name, "tcp", "10.200.0.12:80", n, one, 0))
		// Each real: binomial(300, 1/3), mean 100, sd 8.2; ±5 sd.
		for _, r := range []string{"r1", "r2", "r3"} {
			if c[r] < 59 || c[r] > 141 {
				t.Fatalf("random: %v, each real should get 100±41 of %d", c, n)
			}
		}
		// And not a cycle: random must not behave like rr.
		if c["r1"] == 100 && c["r2"] == 100 {
			t.Logf("random gave an exact split %v (possible, unlikely)", c)
		}
	})
	t.Run("sh", func(t *testing.T) {
		// Each of 25 sources connects 4 times, interleaved.
		res := runProbe(t, b.client.Name, "tcp", "10.200.0.13:80", 4*len(b.srcs), b.srcs, 0)
		bySrc := map[string]string{}
		used := map[string]int{}
		for _, r := range res {
			if r.Err != "" {
				t.Fatalf("sh: %s: %s", r.Src, r.Err)
			}
			if prev, ok := bySrc[r.Src]; ok && prev != r.Name {
				t.Fatalf("sh: source %s went to %s and %s", r.Src, prev, r.Name)
			}
			if _, ok := bySrc[r.Src]; !ok {
				used[r.Name]++
			}
			bySrc[r.Src] = r.Name
		}
		if len(used) != 3 {
			t.Fatalf("sh: %d sources spread over %v, want all 3 reals", len(bySrc), used)
		}
		t.Logf("sh: sources per real %v", used)
	})
	t.Run("rr-ipv6", func(t *testing.T) {
		res := runProbe(t, b.client.Name, "tcp", "[fd00:200::10]:80", 8, one, 0)
		assertCycle(t, "rr ipv6", names(res), map[string]int{"r1": 1, "r2": 1})
	})
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// peerNetnsNoise is what `ip link show` prints on stderr for a veth whose
// peer's namespace another test is deleting at that moment: not state.
const peerNetnsNoise = "Error: Peer netns reference is invalid."

// kernelSnapshot is the namespace state cleanup must restore: rules of
// both families (without comments and counters), links and addresses.
func kernelSnapshot(t *testing.T, ns *testns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"ip", "-o", "link", "show"}, {"ip", "-o", "addr", "show"}, {"ip", "route", "show", "table", "all"}, {"nft", "list", "tables"}} {
		out := ns.MustRun(cmd[0], cmd[1:]...)
		for _, l := range strings.Split(out, "\n") {
			// Link-local IPv6 addresses and routes come and go with DAD on
			// the test's veths, on their own schedule: not the agent's.
			if strings.HasPrefix(l, "#") || strings.Contains(l, "fe80:") || strings.HasPrefix(l, peerNetnsNoise) {
				continue
			}
			b.WriteString(counters.ReplaceAllString(l, "[0:0]") + "\n")
		}
	}
	return b.String()
}

// iptablesOnly is the rules part of a snapshot (links carry counters that
// move with traffic).
func iptablesState(t *testing.T, ns *testns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, c := range []string{"iptables-save", "ip6tables-save"} {
		for _, l := range strings.Split(ns.MustRun(c), "\n") {
			if !strings.HasPrefix(l, "#") {
				b.WriteString(counters.ReplaceAllString(l, "[0:0]") + "\n")
			}
		}
	}
	return b.String()
}

func TestLifecycle(t *testing.T) { forEachBackend(t, 3, testLifecycle) }

func testLifecycle(t *testing.T, b *bed) {
	e := b.edge
	ctx := context.Background()
	// Someone else's state: rules in all four tables, an address on another
	// link. All of it must survive everything below.
	e.MustRun("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "9999", "-j", "DNAT", "--to-destination", "10.97.11.2:8080")
	e.MustRun("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9998", "-j", "ACCEPT")
	e.MustRun("ip6tables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "9999", "-j", "RETURN")
	e.MustRun("ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "9998", "-j", "ACCEPT")
	e.MustRun("ip", "addr", "add", "10.97.1.100/32", "dev", "e0")
	e.MustRun("nft", "add table inet foreign; add chain inet foreign in { type filter hook input priority 5; }; add rule inet foreign in tcp dport 9997 accept")
	e.MustRun("sysctl", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	before := kernelSnapshot(t, e)
	foreignOK := func(step string) {
		t.Helper()
		s := iptablesState(t, e)
		for _, want := range []string{"--dport 9999 -j DNAT --to-destination 10.97.11.2:8080", "--dport 9998 -j ACCEPT", "--dport 9999 -j RETURN"} {
			if !strings.Contains(s, want) {
				t.Fatalf("%s: foreign rule %q is gone:\n%s", step, want, s)
			}
		}
		if out := e.MustRun("ip", "addr", "show", "e0"); !strings.Contains(out, "10.97.1.100/32") {
			t.Fatalf("%s: foreign address gone: %s", step, out)
		}
		if out := e.MustRun("nft", "list", "table", "inet", "foreign"); !strings.Contains(out, "tcp dport 9997 accept") {
			t.Fatalf("%s: foreign nftables rule gone: %s", step, out)
		}
	}
	one := []string{""}
	hit := func(addr string, n int) map[string]int {
		return counts(runProbe(t, b.client.Name, "tcp", addr, n, one, 0))
	}

	reg := prometheus.NewRegistry()
	opt := b.options(t, true)
	opt.Registerer = reg
	d := New(opt)
	web := vs("l", "web", "10.200.0.20", 80, model.TCP, model.RoundRobin, realV4(1), realV4(2))
	dns := vs("l", "dns", "10.200.0.20", 53, model.UDP, model.RoundRobin, realV4(1))
	// A service that cannot be rendered is left out without failing the
	// sync (reconcile fails the test on an error).
	bad := vs("l", "bad", "10.200.0.29", 80, model.TCP, model.RoundRobin, realV6(1))
	reconcile(t, d, web, dns, bad)
	if rej := d.Rejected(); len(rej) != 1 || rej["l/bad/TCP/80"] == nil || d.Programmed()["l/bad/TCP/80"] {
		t.Fatalf("Rejected = %v, Programmed = %v", rej, d.Programmed())
	}
	if n := testutil.ToFloat64(d.metrics.services); n != 2 {
		t.Fatalf("edgeagent_dataplane_virtual_services = %v, want 2", n)
	}
	if n := testutil.ToFloat64(d.metrics.rules); n != float64(d.Status().Rules) || n == 0 {
		t.Fatalf("edgeagent_dataplane_rules = %v, status says %d", n, d.Status().Rules)
	}
	if n, err := testutil.GatherAndCount(reg, "edgeagent_dataplane_sync_duration_seconds", "edgeagent_dataplane_sync_errors_total"); err != nil || n != 2 {
		t.Fatalf("sync metrics registered: %d, %v", n, err)
	}
	if n := testutil.ToFloat64(d.metrics.backend.WithLabelValues(string(b.backend))); n != 1 {
		t.Fatalf("edgeagent_dataplane_backend{backend=%q} = %v, want 1", b.backend, n)
	}
	if st := d.Status(); st.Backend != b.backend {
		t.Fatalf("status backend = %q, want %q", st.Backend, b.backend)
	}
	if got := hit("10.200.0.20:80", 4); got["r1"] != 2 || got["r2"] != 2 {
		t.Fatalf("web with r1,r2: %v", got)
	}
	if !d.Programmed()["l/web/TCP/80"] || !d.Programmed()["l/dns/UDP/53"] {
		t.Fatalf("Programmed = %v", d.Programmed())
	}
	st := d.Status()
	if st.InterfaceKind != KindBridge && st.InterfaceKind != KindDummy || st.Sysctls[sysctlIPv4Forward] != "1" || st.Rules == 0 {
		t.Fatalf("status = %+v", st)
	}
	if out := e.MustRun("ip", "-d", "link", "show", "edge-vip0"); !strings.Contains(out, "NOARP") || !strings.Contains(out, ",UP") {
		t.Fatalf("VIP link: %s", out)
	}
	foreignOK("after first sync")

	t.Run("add real, change policy, add service", func(t *testing.T) {
		web.Reals = append(web.Reals, realV4(3))
		api := vs("l", "api", "10.200.0.21", 8080, model.TCP, model.WeightedRoundRobin, realV4(2), realV4(3))
		api.Reals[0].Weight = 2
		reconcile(t, d, web, dns, api)
		if got := hit("10.200.0.20:80", 6); got["r1"] != 2 || got["r2"] != 2 || got["r3"] != 2 {
			t.Fatalf("web with r1-r3: %v", got)
		}
		if got := hit("10.200.0.21:8080", 6); got["r2"] != 4 || got["r3"] != 2 {
			t.Fatalf("api wrr 2:1: %v", got)
		}
		before := writes(d)
		web.Policy = model.SourceHash
		reconcile(t, d, web, dns, api)
		if writes(d) != before+1 {
			t.Fatalf("a policy change took %d kernel transactions", writes(d)-before)
		}
		if got := hit("10.200.0.20:80", 6); len(got) != 1 {
			t.Fatalf("sh from one source must hit one real: %v", got)
		}
		// Only the changed service's chain was rewritten (iptables); the
		// nftables backend replaces its slots (4,093 for sh).
		if b.backend == BackendIPTables {
			lines := d.ipt().lines
			web.Policy = model.RoundRobin
			reconcile(t, d, web, dns, api)
			if n := d.ipt().lines - lines; n > 8 {
				t.Fatalf("changing one service wrote %d lines", n)
			}
		} else {
			web.Policy = model.RoundRobin
			reconcile(t, d, web, dns, api)
		}
		reconcile(t, d, web, dns) // api removed
		if out := e.MustRun("ip", "addr", "show", "edge-vip0"); strings.Contains(out, "10.200.0.21") {
			t.Fatalf("VIP of removed service still there: %s", out)
		}
		if r := runProbe(t, b.client.Name, "tcp", "10.200.0.21:8080", 1, one, 0); r[0].Err == "" {
			t.Fatalf("removed service still answers: %+v", r[0])
		}
	})

	t.Run("no eligible real rejects", func(t *testing.T) {
		down := web
		down.Reals = slices.Clone(web.Reals)
		for i := range down.Reals {
			down.Reals[i].Healthy = false
		}
		udpDown := dns
		udpDown.Reals = nil
		reconcile(t, d, down, udpDown)
		r := runProbe(t, b.client.Name, "tcp", "10.200.0.20:80", 1, one, 0)
		if !strings.Contains(r[0].Err, "connection refused") {
			t.Fatalf("TCP to a service without reals: %+v, want connection refused (reset)", r[0])
		}
		r = runProbe(t, b.client.Name, "udp", "10.200.0.20:53", 1, one, 0)
		if !strings.Contains(r[0].Err, "connection refused") {
			t.Fatalf("UDP to a service without reals: %+v, want connection refused (port unreachable)", r[0])
		}
		if !d.Programmed()["l/web/TCP/80"] {
			t.Fatal("a rejecting service is programmed too")
		}
		reconcile(t, d, web, dns)
	})

	t.Run("masquerade off", func(t *testing.T) {
		plain := b.dataplane(t, false)
		reconcile(t, plain, web, dns)
		for _, r := range runProbe(t, b.client.Name, "tcp", "10.200.0.20:80", 3, one, 0) {
			if !strings.HasPrefix(r.Peer, "10.97.1.2:") {
				t.Fatalf("without masquerade the real must see the client: %+v", r)
			}
		}
		d.Resync() // the other instance rewrote the rules
		reconcile(t, d, web, dns)
		for _, r := range runProbe(t, b.client.Name, "tcp", "10.200.0.20:80", 3, one, 0) {
			if strings.HasPrefix(r.Peer, "10.97.1.2:") {
				t.Fatalf("masquerade back on, but the real sees the client: %+v", r)
			}
		}
	})

	t.Run("second instance adopts with zero changes", func(t *testing.T) {
		// Every policy and family, so every rule form must read back from
		// iptables-save exactly as rendered.
		six := vs("l", "web6", "fd00:200::20", 80, model.TCP, model.SourceHash, realV6(1), realV6(2))
		rnd := vs("l", "rnd", "10.200.0.22", 80, model.TCP, model.Random, realV4(1), realV4(2), realV4(3))
		rnd.Reals[2].Weight = 5
		wrr := vs("l", "wrr", "10.200.0.23", 80, model.UDP, model.WeightedRoundRobin, realV4(1), realV4(2))
		wrr.Reals[0].Weight = 3
		rej6 := vs("l", "rej6", "fd00:200::21", 53, model.UDP, model.RoundRobin)
		all := []model.VirtualService{web, dns, six, rnd, wrr, rej6}
		reconcile(t, d, all...)
		snap, rules := kernelSnapshot(t, e), b.rulesState(t)
		d2 := b.dataplane(t, true)
		reconcile(t, d2, all...)
		if writes(d2) != 0 || d2.netlinkChanges != 0 {
			t.Fatalf("second instance changed the kernel: %d rules transactions, %d netlink/sysctl changes", writes(d2), d2.netlinkChanges)
		}
		if after := kernelSnapshot(t, e); after != snap {
			t.Fatalf("kernel changed on adoption:\n%s", lineDiff(snap, after))
		}
		if after := b.rulesState(t); after != rules {
			t.Fatalf("rules changed on adoption:\n%s", lineDiff(rules, after))
		}
		if len(d2.Programmed()) != len(all) {
			t.Fatalf("adopted Programmed = %v", d2.Programmed())
		}
		// And a repeated sync is free too.
		reconcile(t, d2, all...)
		if writes(d2) != 0 {
			t.Fatal("repeated sync wrote to the kernel")
		}
		d = d2
	})
	foreignOK("after syncs")

	t.Run("cleanup restores the namespace", func(t *testing.T) {
		if err := d.Routes().Replace(netip.MustParsePrefix("10.244.9.0/24"), []netip.Addr{netip.MustParseAddr("10.97.11.2")}); err != nil {
			t.Fatal(err)
		}
		if err := d.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if after := kernelSnapshot(t, e); after != before {
			t.Fatalf("cleanup left a difference:\n%s", lineDiff(before, after))
		}
		if err := d.Cleanup(ctx); err != nil {
			t.Fatalf("second cleanup: %v", err)
		}
		if after := kernelSnapshot(t, e); after != before {
			t.Fatalf("second cleanup changed something:\n%s", after)
		}
	})
	foreignOK("after cleanup")
}

// ipt is the dataplane's iptables backend.
func (d *Dataplane) ipt() *iptablesRules { return d.rules.(*iptablesRules) }

// lineDiff lists the lines only in a (-) or only in b (+).
func lineDiff(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for _, l := range as {
		if !slices.Contains(bs, l) {
			out.WriteString("- " + l + "\n")
		}
	}
	for _, l := range bs {
		if !slices.Contains(as, l) {
			out.WriteString("+ " + l + "\n")
		}
	}
	return out.String()
}

func TestUDPConntrackOfDepartedReal(t *testing.T) {
	forEachBackend(t, 2, testUDPConntrackOfDepartedReal)
}

func testUDPConntrackOfDepartedReal(t *testing.T, b *bed) {
	d := b.dataplane(t, true)
	dns := vs("u", "dns", "10.200.0.30", 53, model.UDP, model.RoundRobin, realV4(1), realV4(2))
	reconcile(t, d, dns)
	// One client socket (fixed source port): one conntrack entry, so every
	// datagram sticks to the real the first one was sent to.
	src := []string{"10.97.1.2"}
	first := names(runProbe(t, b.client.Name, "udp", "10.200.0.30:53", 3, src, 40053))
	if first[0] != first[1] || first[1] != first[2] || strings.HasPrefix(first[0], "error") {
		t.Fatalf("one flow must stick to one real: %v", first)
	}
	gone := map[string]int{"r1": 0, "r2": 1}[first[0]]
	dns.Reals[gone].Healthy = false
	reconcile(t, d, dns)
	after := names(runProbe(t, b.client.Name, "udp", "10.200.0.30:53", 3, src, 40053))
	for _, n := range after {
		if n == first[0] {
			t.Fatalf("flow still goes to departed real %s: %v (its conntrack entry should be gone)", first[0], after)
		}
	}
	if out := b.edge.MustRun("conntrack", "-L", "-p", "udp", "--reply-src", fmt.Sprintf("10.97.1%d.2", gone+1)); strings.Contains(out, "dport=53") {
		t.Fatalf("conntrack still holds flows of the departed real:\n%s", out)
	}
}

func TestFailedRestoreKeepsRules(t *testing.T) {
	b := newBed(t, 1)
	e := b.edge
	d := b.dataplane(t, true)
	keep := vs("f", "keep", "10.200.0.40", 80, model.TCP, model.RoundRobin, realV4(1))
	old := vs("f", "old", "10.200.0.41", 80, model.TCP, model.RoundRobin, realV4(1))
	reconcile(t, d, keep, old)
	// A foreign rule jumping into the agent's chain for "old" makes deleting
	// that chain fail, and with it the whole transaction.
	oldChain := ChainPrefix + "VS-" + hash16(old.Key())
	e.MustRun("iptables", "-t", "nat", "-A", "PREROUTING", "-s", "192.0.2.99", "-j", oldChain)
	snap := iptablesState(t, e)
	add := vs("f", "new", "10.200.0.42", 80, model.TCP, model.RoundRobin, realV4(1))
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{keep, add}})
	if err == nil {
		t.Fatal("restore should have failed")
	}
	t.Logf("expected error: %v", err)
	if after := iptablesState(t, e); after != snap {
		t.Fatalf("a failed restore changed rules:\n%s", lineDiff(snap, after))
	}
	if p := d.Programmed(); !p["f/old/TCP/80"] || p["f/new/TCP/80"] {
		t.Fatalf("Programmed after failure = %v, want the previous state", p)
	}
	if st := d.Status(); st.LastError == "" {
		t.Fatal("status must carry the error")
	}
	if n := testutil.ToFloat64(d.metrics.errors); n != 1 {
		t.Fatalf("edgeagent_dataplane_sync_errors_total = %v, want 1", n)
	}
	if r := runProbe(t, b.client.Name, "tcp", "10.200.0.41:80", 1, []string{""}, 0); r[0].Name != "r1" {
		t.Fatalf("old service must still work after the failed sync: %+v", r[0])
	}
	// The obstacle goes; the caller's retry converges.
	e.MustRun("iptables", "-t", "nat", "-D", "PREROUTING", "-s", "192.0.2.99", "-j", oldChain)
	reconcile(t, d, keep, add)
	if p := d.Programmed(); p["f/old/TCP/80"] || !p["f/new/TCP/80"] {
		t.Fatalf("Programmed after retry = %v", p)
	}
	if r := runProbe(t, b.client.Name, "tcp", "10.200.0.42:80", 1, []string{""}, 0); r[0].Name != "r1" {
		t.Fatalf("new service after retry: %+v", r[0])
	}
	if s := iptablesState(t, e); strings.Contains(s, oldChain) {
		t.Fatalf("old chain survived the retry")
	}
	if st := d.Status(); st.LastError != "" {
		t.Fatalf("status error after success: %s", st.LastError)
	}
}

func TestResyncRepairsTampering(t *testing.T) { forEachBackend(t, 1, testResyncRepairsTampering) }

func testResyncRepairsTampering(t *testing.T, b *bed) {
	e := b.edge
	d := b.dataplane(t, true)
	web := vs("r", "web", "10.200.0.50", 80, model.TCP, model.RoundRobin, realV4(1))
	reconcile(t, d, web)
	want := b.rulesState(t)
	before := writes(d)
	// Someone flushes the service's rules (its chain; its slots) and
	// removes the VIP.
	if b.backend == BackendNFTables {
		e.MustRun("nft", "flush", "map", "inet", "edgeagent", "slots4")
	} else {
		e.MustRun("iptables", "-t", "nat", "-F", ChainPrefix+"VS-"+hash16(web.Key()))
	}
	e.MustRun("ip", "addr", "del", "10.200.0.50/32", "dev", "edge-vip0")
	reconcile(t, d, web)
	if writes(d) != before {
		t.Fatalf("without Resync the dataplane trusts what it applied; yet it wrote %d transactions", writes(d)-before)
	}
	d.Resync()
	reconcile(t, d, web)
	if got := b.rulesState(t); got != want {
		t.Fatalf("Resync did not repair the rules:\n%s", lineDiff(want, got))
	}
	if out := e.MustRun("ip", "addr", "show", "edge-vip0"); !strings.Contains(out, "10.200.0.50/32") {
		t.Fatalf("Resync did not restore the VIP: %s", out)
	}
	if r := runProbe(t, b.client.Name, "tcp", "10.200.0.50:80", 1, []string{""}, 0); r[0].Name != "r1" {
		t.Fatalf("after repair: %+v", r[0])
	}
}

func TestTCPDrainOfIneligibleReal(t *testing.T) { forEachBackend(t, 2, testTCPDrainOfIneligibleReal) }

func testTCPDrainOfIneligibleReal(t *testing.T, b *bed) {
	d := b.dataplane(t, true)
	web := vs("t", "web", "10.200.0.60", 80, model.TCP, model.RoundRobin, realV4(1), realV4(2))
	reconcile(t, d, web)
	cmd := helperCmd(b.client.Name, "EDGE_TEST_ROLE=hold", "EDGE_ADDR=10.200.0.60:80")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	dec := json.NewDecoder(stdout)
	var first probeResult
	if err := dec.Decode(&first); err != nil || first.Err != "" {
		t.Fatalf("hold: %v %+v", err, first)
	}
	// The real the connection landed on turns unhealthy (or terminating):
	// no new connections, but the established one keeps working.
	i := map[string]int{"r1": 0, "r2": 1}[first.Name]
	web.Reals[i].Terminating = true
	reconcile(t, d, web)
	for _, r := range runProbe(t, b.client.Name, "tcp", "10.200.0.60:80", 4, []string{""}, 0) {
		if r.Name == first.Name {
			t.Fatalf("new connection went to draining real %s", r.Name)
		}
	}
	fmt.Fprintln(stdin, "again")
	var again probeResult
	if err := dec.Decode(&again); err != nil || again.Err != "" || again.Name != first.Name {
		t.Fatalf("established connection to %s after it left: %v %+v", first.Name, err, again)
	}
}
