package nftables_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/dataplane/nftables"
	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/internal/testns"
)

// BenchmarkCLIvsNetlink is the measurement behind writing through netlink:
// the same layout and elements loaded, and one element changed, through
// the nft CLI (`nft -f -`, what sigs.k8s.io/knftables runs for every
// transaction) and through the backend's netlink batches.
func BenchmarkCLIvsNetlink(b *testing.B) {
	services := manyServices(10000, fourReals())
	var text strings.Builder
	text.WriteString(`table inet edgeagent {
	map slots4 { typeof meta l4proto . ip daddr . th dport . numgen inc mod 4 : ip daddr . th dport; }
	set fe4_inc_4 { type inet_proto . ipv4_addr . inet_service; }
	chain services {
		meta l4proto . ip daddr . th dport @fe4_inc_4 ct mark set ct mark | 0x2000 dnat ip to meta l4proto . ip daddr . th dport . numgen inc mod 4 map @slots4
	}
	chain prerouting { type nat hook prerouting priority -110; policy accept; jump services; }
	chain output { type nat hook output priority -110; policy accept; jump services; }
}
`)
	// Elements a thousand per statement, as knftables batches them.
	var els []string
	for _, vs := range services {
		for j, r := range vs.Reals {
			els = append(els, fmt.Sprintf("tcp . %s . 80 . %d : %s . %d", vs.VIP, j, r.IP, r.Port))
		}
	}
	for chunk := range slices.Chunk(els, 1000) {
		fmt.Fprintf(&text, "add element inet edgeagent slots4 { %s }\n", strings.Join(chunk, ", "))
	}
	var fes []string
	for _, vs := range services {
		fes = append(fes, fmt.Sprintf("tcp . %s . 80", vs.VIP))
	}
	for chunk := range slices.Chunk(fes, 1000) {
		fmt.Fprintf(&text, "add element inet edgeagent fe4_inc_4 { %s }\n", strings.Join(chunk, ", "))
	}
	nftF := func(ns *testns.NS, script string) {
		cmd := ns.Cmd("nft", "-f", "-")
		cmd.Stdin = bytes.NewBufferString(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("nft -f: %v %s", err, out)
		}
	}
	var cliLoad, nlLoad time.Duration
	var cliChange, nlChange []time.Duration
	for i := 0; i < b.N; i++ {
		nsC, nsN := testns.New(b, "cc"), testns.New(b, "cn")
		start := time.Now()
		nftF(nsC, text.String())
		cliLoad += time.Since(start)
		be := nftIn(b, nsN, nftables.Options{})
		start = time.Now()
		if err := be.Sync(context.Background(), services); err != nil {
			b.Fatal(err)
		}
		nlLoad += time.Since(start)
		s := cloneServices(services)
		for k := range 50 {
			vs := &s[(k*7919)%len(s)]
			// Slot 3 moves to another real: one element replaced.
			if vs.Reals[3] == lbbed.RealV4(4) {
				vs.Reals[3] = lbbed.RealV4(5)
			} else {
				vs.Reals[3] = lbbed.RealV4(4)
			}
			start = time.Now()
			nftF(nsC, fmt.Sprintf("delete element inet edgeagent slots4 { tcp . %s . 80 . 3 }\nadd element inet edgeagent slots4 { tcp . %s . 80 . 3 : %s . 8080 }\n",
				vs.VIP, vs.VIP, vs.Reals[3].IP))
			cliChange = append(cliChange, time.Since(start))
			start = time.Now()
			if err := be.Sync(context.Background(), s); err != nil {
				b.Fatal(err)
			}
			nlChange = append(nlChange, time.Since(start))
		}
	}
	n := float64(b.N)
	b.ReportMetric(cliLoad.Seconds()/n, "cli-load-s")
	b.ReportMetric(nlLoad.Seconds()/n, "netlink-load-s")
	p50, p99, _ := percentiles(cliChange)
	b.ReportMetric(p50, "cli-change-p50-ms")
	b.ReportMetric(p99, "cli-change-p99-ms")
	p50, p99, _ = percentiles(nlChange)
	b.ReportMetric(p50, "netlink-change-p50-ms")
	b.ReportMetric(p99, "netlink-change-p99-ms")
}

// BenchmarkAdopt10k is a restart: a new backend over a namespace holding
// 10,000 services reads the table, finds nothing to change and writes
// nothing.
func BenchmarkAdopt10k(b *testing.B) {
	ns := testns.New(b, "ad")
	services := manyServices(10000, fourReals())
	if err := nftIn(b, ns, nftables.Options{Masquerade: true}).Sync(context.Background(), services); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be := nftIn(b, ns, nftables.Options{Masquerade: true})
		if err := be.Sync(context.Background(), services); err != nil {
			b.Fatal(err)
		}
		if st := be.Status(); st.Batches != 0 || st.Reads != 1 {
			b.Fatalf("adoption wrote to the kernel: %+v", st)
		}
	}
}

// BenchmarkNftFullSync10k is the nftables backend's full sync alone, for
// profiling.
func BenchmarkNftFullSync10k(b *testing.B) {
	services := manyServices(10000, fourReals())
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		be := nftIn(b, testns.New(b, "nf"), nftables.Options{Masquerade: true})
		b.StartTimer()
		if err := be.Sync(context.Background(), services); err != nil {
			b.Fatal(err)
		}
	}
}
