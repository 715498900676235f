package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/model"
)

// Benchmarks run against the real kernel in throwaway namespaces (root).
// Results and the command line: docs/benchmarks/dataplane.md.

// manyServices returns n TCP services on distinct VIPs 10.200.0.1, .2, ...
// each with the given reals (round robin).
func manyServices(n int, reals []model.Real) []model.VirtualService {
	out := make([]model.VirtualService, n)
	vip := netip.MustParseAddr("10.200.0.0")
	for i := range out {
		vip = vip.Next()
		out[i] = model.VirtualService{Namespace: "bench", Route: fmt.Sprintf("svc%05d", i), VIP: vip, Port: 80,
			Protocol: model.TCP, Policy: model.RoundRobin, Reals: slices.Clone(reals)}
	}
	return out
}

func fourReals() []model.Real {
	var rs []model.Real
	for i := 1; i <= 4; i++ {
		rs = append(rs, real(fmt.Sprintf("10.97.1%d.2:8080", i), 1))
	}
	return rs
}

func nsDataplane(ns *testns.NS) *Dataplane {
	return New(Options{Masquerade: true, Netlink: ns.Handle(), CommandPrefix: []string{"ip", "netns", "exec", ns.Name}})
}

// BenchmarkFullSync10k compares a dataplane sync of 10,000 services × 4
// reals into an empty namespace (link, 10,000 VIP addresses, reading the
// empty tables, rendering, diffing, one restore per family) with one raw
// iptables-restore of the very same rules into another empty namespace.
func BenchmarkFullSync10k(b *testing.B) {
	services := manyServices(10000, fourReals())
	state := model.State{Services: services}
	r := Render(services, RenderOptions{Masquerade: true})
	script := diff(r.V4, r.Jumps, kernelRules{}).script.Bytes()
	b.Logf("rules: %d in %d chains; restore script %d bytes", r.V4.Rules(), len(r.V4[tableNat])+len(r.V4[tableFilter]), len(script))
	var agent, raw, restoreOnly time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns1, ns2 := testns.New(b, "fs"), testns.New(b, "fr")
		d := nsDataplane(ns1)
		b.StartTimer()
		start := time.Now()
		if err := d.Reconcile(context.Background(), state); err != nil {
			b.Fatal(err)
		}
		agent += time.Since(start)
		b.StopTimer()
		start = time.Now()
		cmd := exec.Command("ip", "netns", "exec", ns2.Name, "iptables-restore", "--noflush")
		cmd.Stdin = bytes.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("raw restore: %v %s", err, out)
		}
		raw += time.Since(start)
		// The agent's own restore of the same script, for the split.
		ns3 := testns.New(b, "fo")
		start = time.Now()
		if err := (execIPTables{prefix: []string{"ip", "netns", "exec", ns3.Name}}).restore(context.Background(), "", IPv4, script); err != nil {
			b.Fatal(err)
		}
		restoreOnly += time.Since(start)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(agent.Seconds()/n, "agent-s/op")
	b.ReportMetric(raw.Seconds()/n, "raw-restore-s/op")
	b.ReportMetric(restoreOnly.Seconds()/n, "agent-restore-s/op")
	b.ReportMetric(agent.Seconds()/raw.Seconds(), "ratio")
}

// BenchmarkOneChange10k changes one service (a real joins or leaves) while
// 10,000 exist and measures Reconcile, which returns once the kernel has
// the new rules.
func BenchmarkOneChange10k(b *testing.B) {
	b.Run("hooks=PREROUTING+OUTPUT", func(b *testing.B) { benchOneChange(b, false) })
	b.Run("hooks=PREROUTING", func(b *testing.B) { benchOneChange(b, true) })
}

func benchOneChange(b *testing.B, noLocal bool) {
	ns := testns.New(b, "oc")
	d := New(Options{Masquerade: true, NoLocalTraffic: noLocal, Netlink: ns.Handle(), CommandPrefix: []string{"ip", "netns", "exec", ns.Name}})
	services := manyServices(10000, fourReals())
	if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
		b.Fatal(err)
	}
	var durs, raw []time.Duration
	restores, lines := d.ipt().restores, d.ipt().lines
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vs := &services[(i*7919)%len(services)]
		if len(vs.Reals) == 4 {
			vs.Reals = vs.Reals[:3]
		} else {
			vs.Reals = fourReals()
		}
		start := time.Now()
		if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
		// The kernel's floor: the same chain rewritten by a bare
		// iptables-restore, in the same namespace, right after.
		b.StopTimer()
		chain := ChainPrefix + "VS-" + hash16(vs.Key())
		script := "*nat\n:" + chain + " - [0:0]\n" + strings.Join(d.ipt().want.rs[IPv4][tableNat][chain], "\n") + "\nCOMMIT\n"
		start = time.Now()
		if err := d.ipt().tools.restore(context.Background(), d.ipt().mode, IPv4, []byte(script)); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(start))
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(raw)
	b.ReportMetric(float64(raw[len(raw)/2].Microseconds())/1000, "raw-p50-ms")
	b.ReportMetric(float64(raw[len(raw)*99/100].Microseconds())/1000, "raw-p99-ms")
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(durs[len(durs)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(d.ipt().restores-restores)/float64(b.N), "restores/op")
	b.ReportMetric(float64(d.ipt().lines-lines)/float64(b.N), "lines/op")
}

// BenchmarkConnLatency10k measures new-connection latency (connect + first
// reply, from a client namespace through the edge to a real) to the first
// and to the 10,000th VIP, with the agent's two-level dispatch and then
// with all 10,000 dispatch rules in one flat chain, as a naive layout would
// have them.
func BenchmarkConnLatency10k(b *testing.B) {
	bd := newBenchBed(b)
	d := New(Options{Masquerade: true, Netlink: bd.edge.Handle(), CommandPrefix: []string{"ip", "netns", "exec", bd.edge.Name}})
	services := manyServices(10000, []model.Real{real("10.97.11.2:8080", 1)})
	if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
		b.Fatal(err)
	}
	first, last := services[0].VIP.String()+":80", services[len(services)-1].VIP.String()+":80"
	const n = 2000
	measure := func(addr string) time.Duration {
		res := runProbe(b, bd.client.Name, "tcp", addr, n, []string{""}, 0)
		var ds []time.Duration
		for _, r := range res[100:] { // warm-up
			if r.Err != "" {
				b.Fatalf("%s: %s", addr, r.Err)
			}
			ds = append(ds, time.Duration(r.Ns))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	b.ResetTimer()
	var f1, l1, f2, l2 time.Duration
	for i := 0; i < b.N; i++ {
		f1 += measure(first)
		l1 += measure(last)
	}
	b.StopTimer()
	// Flat layout: every service's dispatch rule in EDGE-SERVICES, in VIP
	// order (what a linear design does).
	r := Render(services, RenderOptions{Masquerade: true})
	var flat strings.Builder
	flat.WriteString("*nat\n:EDGE-SERVICES - [0:0]\n")
	var rules []string
	for _, c := range sortedKeys(r.V4[tableNat]) {
		if strings.HasPrefix(c, ChainPrefix+"B4-") {
			for _, rule := range r.V4[tableNat][c] {
				rules = append(rules, strings.Replace(rule, "-A "+c+" ", "-A EDGE-SERVICES ", 1))
			}
		}
	}
	slices.SortStableFunc(rules, func(a, b string) int { return compareVIPRule(a, b) })
	flat.WriteString(strings.Join(rules, "\n") + "\nCOMMIT\n")
	if err := (execIPTables{prefix: []string{"ip", "netns", "exec", bd.edge.Name}}).restore(context.Background(), "", IPv4, []byte(flat.String())); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		f2 += measure(first)
		l2 += measure(last)
	}
	N := float64(b.N)
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / N }
	b.ReportMetric(us(f1), "first-µs")
	b.ReportMetric(us(l1), "last-µs")
	b.ReportMetric(float64(l1)/float64(f1), "last/first")
	b.ReportMetric(us(f2), "flat-first-µs")
	b.ReportMetric(us(l2), "flat-last-µs")
	b.ReportMetric(float64(l2)/float64(f2), "flat-last/first")
}

func compareVIPRule(a, b string) int {
	vip := func(s string) netip.Addr {
		f := strings.Fields(s)
		for i, x := range f {
			if x == "-d" {
				p, _ := netip.ParsePrefix(f[i+1])
				return p.Addr()
			}
		}
		return netip.Addr{}
	}
	return vip(a).Compare(vip(b))
}

type benchBed struct{ client, edge *testns.NS }

// newBenchBed: client ─ edge ─ one real (r1, serving on 8080).
func newBenchBed(b *testing.B) *benchBed {
	bd := &benchBed{client: testns.New(b, "bc"), edge: testns.New(b, "be")}
	r := testns.New(b, "br")
	testns.Veth(b, bd.edge, "e0", "10.97.1.1/24", bd.client, "c0", "10.97.1.2/24")
	testns.Veth(b, bd.edge, "r1", "10.97.11.1/24", r, "eth0", "10.97.11.2/24")
	bd.client.MustRun("ip", "route", "add", "default", "via", "10.97.1.1")
	r.MustRun("ip", "route", "add", "default", "via", "10.97.11.1")
	startServer(b, r.Name, "r1", 8080)
	return bd
}

// BenchmarkDesiredUpdate10k is the user-space part of a one-service change
// among 10,000: find what changed, re-render it, rebuild its dispatch chain.
func BenchmarkDesiredUpdate10k(b *testing.B) {
	services := manyServices(10000, fourReals())
	d := newDesired(RenderOptions{Masquerade: true})
	d.update(services)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vs := &services[(i*7919)%len(services)]
		if len(vs.Reals) == 4 {
			vs.Reals = vs.Reals[:3]
		} else {
			vs.Reals = fourReals()
		}
		d.update(services)
	}
}

// BenchmarkAdopt10k is a restart: a new Dataplane over a namespace that
// already holds 10,000 services reads the link, addresses and rules, finds
// nothing to change and changes nothing.
func BenchmarkAdopt10k(b *testing.B) {
	ns := testns.New(b, "ad")
	services := manyServices(10000, fourReals())
	if err := nsDataplane(ns).Reconcile(context.Background(), model.State{Services: services}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := nsDataplane(ns)
		if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
			b.Fatal(err)
		}
		if d.ipt().restores != 0 || d.netlinkChanges != 0 {
			b.Fatalf("adoption changed the kernel: %d restores, %d netlink changes", d.ipt().restores, d.netlinkChanges)
		}
	}
}
