package nftables_test

// Benchmarks of the nftables backend side by side with the iptables
// backend (dataplane.Dataplane), in the same run, against the real kernel
// in throwaway namespaces (root). Results, machine and command:
// docs/benchmarks/dataplane.md.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/dataplane/nftables"
	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/model"
)

// manyServices returns n TCP services on distinct VIPs 10.200.0.1, .2, ...
// each with the given reals (round robin), as dataplane's benchmarks do.
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
		rs = append(rs, lbbed.RealV4(i))
	}
	return rs
}

func cloneServices(s []model.VirtualService) []model.VirtualService {
	out := slices.Clone(s)
	for i := range out {
		out[i].Reals = slices.Clone(out[i].Reals)
	}
	return out
}

func nftIn(tb testing.TB, ns *testns.NS, opt nftables.Options) *nftables.Backend {
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		tb.Fatal(err)
	}
	opt.NetNS = h
	b := nftables.New(opt)
	tb.Cleanup(func() { b.Close(); h.Close() })
	return b
}

// nftDataplaneIn is the agent's path with the nftables backend: a
// Dataplane (VIP interface and addresses, sysctls) driving it.
func nftDataplaneIn(tb testing.TB, ns *testns.NS) *dataplane.Dataplane {
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return dataplane.New(dataplane.Options{Backend: dataplane.BackendNFTables, Masquerade: true, Netlink: ns.Handle(), NetNS: h,
		CommandPrefix: []string{"ip", "netns", "exec", ns.Name}})
}

func iptIn(ns *testns.NS) *dataplane.Dataplane {
	return dataplane.New(dataplane.Options{Masquerade: true, Netlink: ns.Handle(), CommandPrefix: []string{"ip", "netns", "exec", ns.Name}})
}

// cpuTime is the CPU time (user + system) of this process and of the
// children it waited for (iptables-restore, ip, sysctl). The kernel work of
// an nftables batch runs inside the sendmsg that carries it, so it counts
// as this process's system time; the iptables backend's runs in its
// iptables-restore children. Unlike wall time it barely moves when other
// jobs load the machine, so it is the fairer comparison on a shared
// machine (work the kernel defers to its own threads is in neither).
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

func percentiles(d []time.Duration) (p50, p99, worst float64) {
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	return ms(s[len(s)/2]), ms(s[len(s)*99/100]), ms(s[len(s)-1])
}

// BenchmarkFullSync10k: 10,000 services × 4 reals into an empty namespace.
// iptables: the whole dataplane Reconcile (rules and the 10,000 VIP
// addresses, concurrently) and a bare iptables-restore of the same rules;
// nftables: the backend's Sync (rules only), and, for the whole picture,
// the same 10,000 VIP addresses added by netlink as the dataplane adds
// them (a cost both backends share).
func BenchmarkFullSync10k(b *testing.B) {
	services := manyServices(10000, fourReals())
	r := dataplane.Render(services, dataplane.RenderOptions{Masquerade: true})
	script := []byte(r.V4.Format(r.Jumps))
	var ipt, iptRules, nft, vips, nftWhole time.Duration
	var iptCPU, iptRulesCPU, nftCPU, nftWholeCPU time.Duration
	var elements int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nsI, nsR, nsN, nsV, nsD := testns.New(b, "fi"), testns.New(b, "fr"), testns.New(b, "fn"), testns.New(b, "fv"), testns.New(b, "fd")
		d := iptIn(nsI)
		dn := nftDataplaneIn(b, nsD)
		be := nftIn(b, nsN, nftables.Options{Masquerade: true})
		b.StartTimer()
		start, c0 := time.Now(), cpuTime()
		if err := be.Sync(context.Background(), services); err != nil {
			b.Fatal(err)
		}
		nft, nftCPU = nft+time.Since(start), nftCPU+cpuTime()-c0
		b.StopTimer()
		elements = be.Status().Elements
		start, c0 = time.Now(), cpuTime()
		if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
			b.Fatal(err)
		}
		ipt, iptCPU = ipt+time.Since(start), iptCPU+cpuTime()-c0
		start, c0 = time.Now(), cpuTime()
		cmd := nsR.Cmd("iptables-restore")
		cmd.Stdin = bytes.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("iptables-restore: %v %s", err, out)
		}
		iptRules, iptRulesCPU = iptRules+time.Since(start), iptRulesCPU+cpuTime()-c0
		start = time.Now()
		addVIPs(b, nsV, services)
		vips += time.Since(start)
		start, c0 = time.Now(), cpuTime()
		if err := dn.Reconcile(context.Background(), model.State{Services: services}); err != nil {
			b.Fatal(err)
		}
		nftWhole, nftWholeCPU = nftWhole+time.Since(start), nftWholeCPU+cpuTime()-c0
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(nft.Seconds()/n, "nft-s/op")
	b.ReportMetric(ipt.Seconds()/n, "ipt-s/op")
	b.ReportMetric(iptRules.Seconds()/n, "ipt-rules-s/op")
	b.ReportMetric(vips.Seconds()/n, "vips-s/op")
	b.ReportMetric(iptRules.Seconds()/nft.Seconds(), "rules-speedup")
	b.ReportMetric(ipt.Seconds()/(nft.Seconds()+vips.Seconds()), "whole-speedup")
	b.ReportMetric(nftWhole.Seconds()/n, "nft-dataplane-s/op")
	b.ReportMetric(nftWholeCPU.Seconds()/n, "nft-dataplane-cpu-s/op")
	b.ReportMetric(ipt.Seconds()/nftWhole.Seconds(), "dataplane-speedup")
	b.ReportMetric(float64(elements), "nft-elements")
	b.ReportMetric(nftCPU.Seconds()/n, "nft-cpu-s/op")
	b.ReportMetric(iptCPU.Seconds()/n, "ipt-cpu-s/op")
	b.ReportMetric(iptRulesCPU.Seconds()/n, "ipt-rules-cpu-s/op")
	b.ReportMetric(iptRulesCPU.Seconds()/nftCPU.Seconds(), "rules-cpu-speedup")
}

// addVIPs puts every VIP on a port-less bridge by netlink, as the
// dataplane's VIP interface does.
func addVIPs(tb testing.TB, ns *testns.NS, services []model.VirtualService) {
	h := ns.Handle()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "edge-vip0"
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		tb.Fatal(err)
	}
	l, err := h.LinkByName("edge-vip0")
	if err != nil {
		tb.Fatal(err)
	}
	for _, vs := range services {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: vs.VIP.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkOneChange10k changes one service (a real leaves or comes back)
// among 10,000 × 4, b.N times, and measures until the kernel has it (Sync /
// Reconcile return): the nftables backend, then the iptables backend, in
// one run (not interleaved: an iptables-nft commit leaves the kernel
// deferred work that would land in the next nftables measurement). The
// sub-benchmarks also run alone, e.g. the nftables one under a real-time
// priority to take other jobs' preemption out of the tail:
//
//	go test -c -o /tmp/nft.test ./dataplane/nftables
//	chrt -f 10 /tmp/nft.test -test.run XXX -test.bench 'OneChange10k/nftables' -test.benchtime 300x
func BenchmarkOneChange10k(b *testing.B) {
	toggle := func(s []model.VirtualService, i int) {
		vs := &s[(i*7919)%len(s)]
		if len(vs.Reals) == 4 {
			vs.Reals = vs.Reals[:3]
		} else {
			vs.Reals = fourReals()
		}
	}
	report := func(b *testing.B, wall, cpu []time.Duration) {
		p50, p99, worst := percentiles(wall)
		b.ReportMetric(p50, "p50-ms")
		b.ReportMetric(p99, "p99-ms")
		b.ReportMetric(worst, "max-ms")
		var sum time.Duration
		for _, x := range cpu {
			sum += x
		}
		b.ReportMetric(float64(sum.Microseconds())/1000/float64(len(cpu)), "cpu-mean-ms")
	}
	b.Run("nftables", func(b *testing.B) {
		be := nftIn(b, testns.New(b, "on"), nftables.Options{Masquerade: true})
		s := manyServices(10000, fourReals())
		if err := be.Sync(context.Background(), s); err != nil {
			b.Fatal(err)
		}
		st := be.Status()
		var wall, cpu []time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			toggle(s, i)
			start, c0 := time.Now(), cpuTime()
			if err := be.Sync(context.Background(), s); err != nil {
				b.Fatal(err)
			}
			wall, cpu = append(wall, time.Since(start)), append(cpu, cpuTime()-c0)
		}
		b.StopTimer()
		report(b, wall, cpu)
		now := be.Status()
		b.ReportMetric(float64(now.Batches-st.Batches)/float64(b.N), "batches/op")
		b.ReportMetric(float64(now.ElementWrites-st.ElementWrites)/float64(b.N), "elements/op")
		if now.Reads != st.Reads {
			b.Fatalf("the table was read again during the changes: %+v", now)
		}
	})
	// The agent's path: the Dataplane driving the nftables backend.
	b.Run("nftables-dataplane", func(b *testing.B) {
		d := nftDataplaneIn(b, testns.New(b, "od"))
		s := manyServices(10000, fourReals())
		if err := d.Reconcile(context.Background(), model.State{Services: s}); err != nil {
			b.Fatal(err)
		}
		var wall, cpu []time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			toggle(s, i)
			start, c0 := time.Now(), cpuTime()
			if err := d.Reconcile(context.Background(), model.State{Services: s}); err != nil {
				b.Fatal(err)
			}
			wall, cpu = append(wall, time.Since(start)), append(cpu, cpuTime()-c0)
		}
		b.StopTimer()
		report(b, wall, cpu)
	})
	b.Run("iptables", func(b *testing.B) {
		d := iptIn(testns.New(b, "oi"))
		s := manyServices(10000, fourReals())
		if err := d.Reconcile(context.Background(), model.State{Services: s}); err != nil {
			b.Fatal(err)
		}
		var wall, cpu []time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			toggle(s, i)
			start, c0 := time.Now(), cpuTime()
			if err := d.Reconcile(context.Background(), model.State{Services: s}); err != nil {
				b.Fatal(err)
			}
			wall, cpu = append(wall, time.Since(start)), append(cpu, cpuTime()-c0)
		}
		b.StopTimer()
		report(b, wall, cpu)
	})
}

// BenchmarkSyncNoChange10k is the user-space floor of a sync at 10,000
// services in the nftables backend: the pass over the input that finds
// nothing changed (nothing is written).
func BenchmarkSyncNoChange10k(b *testing.B) {
	ns := testns.New(b, "nc")
	be := nftIn(b, ns, nftables.Options{Masquerade: true})
	s := manyServices(10000, fourReals())
	if err := be.Sync(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := be.Sync(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnLatency10k: new-connection latency (connect + first reply,
// client → edge → real) to the 1st and the 10,000th VIP, with 10,000
// services in the kernel, first with the iptables backend, then, on the
// same bed, with the nftables backend.
func BenchmarkConnLatency10k(b *testing.B) {
	bd := lbbed.New(b, 1)
	services := manyServices(10000, []model.Real{lbbed.RealV4(1)})
	first, last := services[0].VIP.String()+":80", services[len(services)-1].VIP.String()+":80"
	// Medians of 10 rounds of 250 connections to each, alternating, so
	// that a change in the machine's load hits both alike.
	measure := func() (time.Duration, time.Duration) {
		var df, dl []time.Duration
		for round := range 10 {
			for _, c := range []struct {
				addr string
				ds   *[]time.Duration
			}{{first, &df}, {last, &dl}} {
				res := lbbed.Probe(b, bd.Client.Name, "tcp", c.addr, 250, []string{""}, 0)
				for k, r := range res {
					if r.Err != "" {
						b.Fatalf("%s: %s", c.addr, r.Err)
					}
					if round > 0 || k >= 50 { // warm-up
						*c.ds = append(*c.ds, time.Duration(r.Ns))
					}
				}
			}
		}
		slices.Sort(df)
		slices.Sort(dl)
		return df[len(df)/2], dl[len(dl)/2]
	}
	d := iptIn(bd.Edge)
	if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var f1, l1, f2, l2 time.Duration
	for i := 0; i < b.N; i++ {
		f, l := measure()
		f1, l1 = f1+f, l1+l
	}
	b.StopTimer()
	if err := d.Cleanup(context.Background()); err != nil {
		b.Fatal(err)
	}
	be := nftIn(b, bd.Edge, nftables.Options{Masquerade: true})
	if err := be.Sync(context.Background(), services); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		f, l := measure()
		f2, l2 = f2+f, l2+l
	}
	N := float64(b.N)
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / N }
	b.ReportMetric(us(f1), "ipt-first-µs")
	b.ReportMetric(us(l1), "ipt-last-µs")
	b.ReportMetric(float64(l1)/float64(f1), "ipt-last/first")
	b.ReportMetric(us(f2), "nft-first-µs")
	b.ReportMetric(us(l2), "nft-last-µs")
	b.ReportMetric(float64(l2)/float64(f2), "nft-last/first")
}

// BenchmarkSourceHashMovement10k: 10,000 client addresses connect to one
// sh service of 8 reals; then one real leaves, then it comes back (joins).
// Reported: the fraction of clients whose real changed, measured through
// the kernel, ×8 (so the minimum is 1 and the bound 1.2), for both
// backends; and for nftables the same fraction predicted by the jhash
// model (it must agree).
func BenchmarkSourceHashMovement10k(b *testing.B) {
	const sources = 10000
	bd := lbbed.New(b, 8)
	// The client owns 10.98.0.0/18 (a local route: any address in it can
	// be bound), and the edge routes it back.
	bd.Client.MustRun("ip", "route", "add", "local", "10.98.0.0/18", "dev", "lo")
	bd.Edge.MustRun("ip", "route", "add", "10.98.0.0/18", "via", "10.97.1.2")
	first := netip.MustParseAddr("10.98.0.1")
	srcs := []string{lbbed.SourceRange(first, sources)}
	var reals []model.Real
	for i := 1; i <= 8; i++ {
		reals = append(reals, lbbed.RealV4(i))
	}
	vs := model.VirtualService{Namespace: "b", Route: "sh", VIP: netip.MustParseAddr("10.200.0.13"), Port: 80,
		Protocol: model.TCP, Policy: model.SourceHash, Reals: reals}
	observe := func() map[string]string {
		out := map[string]string{}
		for _, r := range lbbed.Probe(b, bd.Client.Name, "tcp", "10.200.0.13:80", sources, srcs, 0) {
			if r.Err != "" {
				b.Fatalf("%s: %s", r.Src, r.Err)
			}
			out[r.Src] = r.Name
		}
		return out
	}
	moved := func(a, c map[string]string) float64 {
		n := 0
		for s, r := range a {
			if c[s] != r {
				n++
			}
		}
		return float64(n) / float64(len(a)) * 8
	}
	run := func(apply func(model.VirtualService)) (leave, join float64) {
		v := vs
		v.Reals = slices.Clone(reals)
		apply(v)
		all := observe()
		v.Reals[4].Healthy = false // r5 leaves
		apply(v)
		left := observe()
		v.Reals[4].Healthy = true
		apply(v)
		back := observe()
		return moved(all, left), moved(left, back)
	}
	var il, ij, nl, nj float64
	iptOK := true
	for i := 0; i < b.N; i++ {
		bd.AddVIPs(b, "10.200.0.13")
		be := nftIn(b, bd.Edge, nftables.Options{Masquerade: true})
		l, j := run(func(v model.VirtualService) {
			if err := be.Sync(context.Background(), []model.VirtualService{v}); err != nil {
				b.Fatal(err)
			}
		})
		nl, nj = nl+l, nj+j
		if err := be.Cleanup(context.Background()); err != nil {
			b.Fatal(err)
		}
		if !iptOK {
			continue
		}
		d := iptIn(bd.Edge)
		if err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{vs}}); err != nil {
			// iptables 1.8.9's cluster match refuses node masks above 32
			// (it parses the mask as a node number), so the iptables
			// backend cannot program sh over 7 or more reals.
			b.Logf("iptables backend, sh over 8 reals: %v", err)
			iptOK = false
			d.Cleanup(context.Background())
			continue
		}
		l, j = run(func(v model.VirtualService) {
			if err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{v}}); err != nil {
				b.Fatal(err)
			}
		})
		il, ij = il+l, ij+j
		if err := d.Cleanup(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	N := float64(b.N)
	b.ReportMetric(nl/N, "nft-leave×8")
	b.ReportMetric(nj/N, "nft-join×8")
	if iptOK {
		b.ReportMetric(il/N, "ipt-leave×8")
		b.ReportMetric(ij/N, "ipt-join×8")
	}
	ml, mj := modelMovement(vs, first, sources)
	b.ReportMetric(ml, "nft-model-leave×8")
	b.ReportMetric(mj, "nft-model-join×8")
}

// BenchmarkHeap10k: the Go heap each backend keeps for 10,000 services × 4
// reals (its desired and believed kernel state), measured after a GC.
func BenchmarkHeap10k(b *testing.B) {
	services := manyServices(10000, fourReals())
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var ipt, nft float64
	for i := 0; i < b.N; i++ {
		nsI, nsN := testns.New(b, "hi"), testns.New(b, "hn")
		s := cloneServices(services)
		h0 := heap()
		d := iptIn(nsI)
		if err := d.Reconcile(context.Background(), model.State{Services: s}); err != nil {
			b.Fatal(err)
		}
		h1 := heap()
		be := nftIn(b, nsN, nftables.Options{Masquerade: true})
		if err := be.Sync(context.Background(), s); err != nil {
			b.Fatal(err)
		}
		h2 := heap()
		runtime.KeepAlive(d)
		runtime.KeepAlive(be)
		ipt += float64(h1-h0) / (1 << 20)
		nft += float64(h2-h1) / (1 << 20)
	}
	b.ReportMetric(ipt/float64(b.N), "ipt-heap-MiB")
	b.ReportMetric(nft/float64(b.N), "nft-heap-MiB")
}

// modelMovement predicts the movement of BenchmarkSourceHashMovement10k
// from the slot tables and the kernel's jhash.
func modelMovement(vs model.VirtualService, first netip.Addr, n int) (leave, join float64) {
	table := func(v model.VirtualService) func(netip.Addr) netip.AddrPort {
		mod, slots := nftables.ShTable(v)
		return func(src netip.Addr) netip.AddrPort {
			return slots[nftables.KernelJhash(src.AsSlice(), nftables.JhashSeed, mod)]
		}
	}
	all := table(vs)
	v := vs
	v.Reals = slices.Clone(vs.Reals)
	v.Reals[4].Healthy = false
	left := table(v)
	ml := 0
	src := first
	for range n {
		if all(src) != left(src) {
			ml++
		}
		src = src.Next()
	}
	// Joining is the reverse change: the same slots move back.
	return float64(ml) / float64(n) * 8, float64(ml) / float64(n) * 8
}
