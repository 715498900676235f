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

func iptIn(ns *testns.NS) *dataplane.Dataplane {
	return dataplane.New(dataplane.Options{Masquerade: true, Netlink: ns.Handle(), CommandPrefix: []string{"ip", "netns", "exec", ns.Name}})
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
	var ipt, iptRules, nft, vips time.Duration
	var elements int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nsI, nsR, nsN, nsV := testns.New(b, "fi"), testns.New(b, "fr"), testns.New(b, "fn"), testns.New(b, "fv")
		d := iptIn(nsI)
		be := nftIn(b, nsN, nftables.Options{Masquerade: true})
		b.StartTimer()
		start := time.Now()
		if err := be.Sync(context.Background(), services); err != nil {
			b.Fatal(err)
		}
		nft += time.Since(start)
		b.StopTimer()
		elements = be.Status().Elements
		start = time.Now()
		if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
			b.Fatal(err)
		}
		ipt += time.Since(start)
		start = time.Now()
		cmd := nsR.Cmd("iptables-restore")
		cmd.Stdin = bytes.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("iptables-restore: %v %s", err, out)
		}
		iptRules += time.Since(start)
		start = time.Now()
		addVIPs(b, nsV, services)
		vips += time.Since(start)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(nft.Seconds()/n, "nft-s/op")
	b.ReportMetric(ipt.Seconds()/n, "ipt-s/op")
	b.ReportMetric(iptRules.Seconds()/n, "ipt-rules-s/op")
	b.ReportMetric(vips.Seconds()/n, "vips-s/op")
	b.ReportMetric(iptRules.Seconds()/nft.Seconds(), "rules-speedup")
	b.ReportMetric(ipt.Seconds()/(nft.Seconds()+vips.Seconds()), "whole-speedup")
	b.ReportMetric(float64(elements), "nft-elements")
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
// among 10,000 × 4, b.N times in the nftables backend, then b.N times in
// the iptables backend (not interleaved: an iptables-nft commit leaves the
// kernel deferred work that would land in the next nftables measurement),
// and measures until the kernel has it (Sync / Reconcile return).
func BenchmarkOneChange10k(b *testing.B) {
	nsI, nsN := testns.New(b, "oi"), testns.New(b, "on")
	d := iptIn(nsI)
	be := nftIn(b, nsN, nftables.Options{Masquerade: true})
	sI, sN := manyServices(10000, fourReals()), manyServices(10000, fourReals())
	if err := d.Reconcile(context.Background(), model.State{Services: sI}); err != nil {
		b.Fatal(err)
	}
	if err := be.Sync(context.Background(), sN); err != nil {
		b.Fatal(err)
	}
	toggle := func(s []model.VirtualService, i int) {
		vs := &s[(i*7919)%len(s)]
		if len(vs.Reals) == 4 {
			vs.Reals = vs.Reals[:3]
		} else {
			vs.Reals = fourReals()
		}
	}
	st := be.Status()
	var ipt, nft []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		toggle(sN, i)
		start := time.Now()
		if err := be.Sync(context.Background(), sN); err != nil {
			b.Fatal(err)
		}
		nft = append(nft, time.Since(start))
	}
	for i := 0; i < b.N; i++ {
		toggle(sI, i)
		start := time.Now()
		if err := d.Reconcile(context.Background(), model.State{Services: sI}); err != nil {
			b.Fatal(err)
		}
		ipt = append(ipt, time.Since(start))
	}
	b.StopTimer()
	p50, p99, worst := percentiles(nft)
	b.ReportMetric(p50, "nft-p50-ms")
	b.ReportMetric(p99, "nft-p99-ms")
	b.ReportMetric(worst, "nft-max-ms")
	p50, p99, worst = percentiles(ipt)
	b.ReportMetric(p50, "ipt-p50-ms")
	b.ReportMetric(p99, "ipt-p99-ms")
	b.ReportMetric(worst, "ipt-max-ms")
	now := be.Status()
	b.ReportMetric(float64(now.Batches-st.Batches)/float64(b.N), "nft-batches/op")
	b.ReportMetric(float64(now.ElementWrites-st.ElementWrites)/float64(b.N), "nft-elements/op")
	if now.Reads != st.Reads {
		b.Fatalf("the table was read again during the changes: %+v", now)
	}
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
	const n = 2000
	measure := func(addr string) time.Duration {
		res := lbbed.Probe(b, bd.Client.Name, "tcp", addr, n, []string{""}, 0)
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
	d := iptIn(bd.Edge)
	if err := d.Reconcile(context.Background(), model.State{Services: services}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var f1, l1, f2, l2 time.Duration
	for i := 0; i < b.N; i++ {
		f1 += measure(first)
		l1 += measure(last)
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
		f2 += measure(first)
		l2 += measure(last)
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
	for i := 0; i < b.N; i++ {
		d := iptIn(bd.Edge)
		l, j := run(func(v model.VirtualService) {
			if err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{v}}); err != nil {
				b.Fatal(err)
			}
		})
		il, ij = il+l, ij+j
		if err := d.Cleanup(context.Background()); err != nil {
			b.Fatal(err)
		}
		bd.AddVIPs(b, "10.200.0.13")
		be := nftIn(b, bd.Edge, nftables.Options{Masquerade: true})
		l, j = run(func(v model.VirtualService) {
			if err := be.Sync(context.Background(), []model.VirtualService{v}); err != nil {
				b.Fatal(err)
			}
		})
		nl, nj = nl+l, nj+j
		if err := be.Cleanup(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	N := float64(b.N)
	b.ReportMetric(nl/N, "nft-leave×8")
	b.ReportMetric(nj/N, "nft-join×8")
	b.ReportMetric(il/N, "ipt-leave×8")
	b.ReportMetric(ij/N, "ipt-join×8")
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
		return func(src netip.Addr) netip.AddrPort { return slots[nftables.KernelJhash(src.AsSlice(), nftables.JhashSeed, mod)] }
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
