package nftables

import (
	"context"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/model"
)

func mustSync(t *testing.T, b *Backend, services ...model.VirtualService) {
	t.Helper()
	if err := b.Sync(context.Background(), services); err != nil {
		t.Fatalf("sync: %v", err)
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

func TestPoliciesTraffic(t *testing.T) {
	bd := lbbed.New(t, 3)
	b := nsBackend(t, bd.Edge, Options{Masquerade: true})
	r1, r2, r3 := lbbed.RealV4(1), lbbed.RealV4(2), lbbed.RealV4(3)
	wrr := lbbed.Service("p", "wrr", "10.200.0.11", 80, model.TCP, model.WeightedRoundRobin, r1, r2, r3)
	wrr.Reals[0].Weight, wrr.Reals[1].Weight, wrr.Reals[2].Weight = 3, 2, 1
	bd.AddVIPs(t, "10.200.0.10", "10.200.0.11", "10.200.0.12", "10.200.0.13", "fd00:200::10", "fd00:200::13")
	mustSync(t, b,
		lbbed.Service("p", "rr", "10.200.0.10", 80, model.TCP, model.RoundRobin, r1, r2, r3),
		lbbed.Service("p", "rr-udp", "10.200.0.10", 53, model.UDP, model.RoundRobin, r1, r2, r3),
		wrr,
		lbbed.Service("p", "random", "10.200.0.12", 80, model.TCP, model.Random, r1, r2, r3),
		lbbed.Service("p", "sh", "10.200.0.13", 80, model.TCP, model.SourceHash, r1, r2, r3),
		lbbed.Service("p", "rr6", "fd00:200::10", 80, model.TCP, model.RoundRobin, lbbed.RealV6(1), lbbed.RealV6(2)),
		lbbed.Service("p", "sh6", "fd00:200::13", 80, model.TCP, model.SourceHash, lbbed.RealV6(1), lbbed.RealV6(2), lbbed.RealV6(3)),
	)
	one := []string{""}
	t.Run("rr", func(t *testing.T) {
		res := lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.10:80", 30, one, 0)
		assertCycle(t, "rr tcp", lbbed.Names(res), map[string]int{"r1": 1, "r2": 1, "r3": 1})
		for _, r := range res {
			if !strings.HasPrefix(r.Peer, "10.97.1"+r.Name[1:]+".1:") {
				t.Fatalf("real %s saw peer %s, want the edge's address (masquerade)", r.Name, r.Peer)
			}
		}
	})
	t.Run("rr-udp", func(t *testing.T) {
		res := lbbed.Probe(t, bd.Client.Name, "udp", "10.200.0.10:53", 12, one, 0)
		assertCycle(t, "rr udp", lbbed.Names(res), map[string]int{"r1": 1, "r2": 1, "r3": 1})
	})
	t.Run("wrr", func(t *testing.T) {
		res := lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.11:80", 60, one, 0)
		assertCycle(t, "wrr", lbbed.Names(res), map[string]int{"r1": 3, "r2": 2, "r3": 1})
	})
	t.Run("random", func(t *testing.T) {
		const n = 300
		c := lbbed.Counts(lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.12:80", n, one, 0))
		for _, r := range []string{"r1", "r2", "r3"} {
			if c[r] < 59 || c[r] > 141 {
				t.Fatalf("random: %v, each real should get 100±41 of %d", c, n)
			}
		}
	})
	sh := func(t *testing.T, addr string, srcs []string) {
		res := lbbed.Probe(t, bd.Client.Name, "tcp", addr, 4*len(srcs), srcs, 0)
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
	}
	t.Run("sh", func(t *testing.T) { sh(t, "10.200.0.13:80", bd.Srcs) })
	t.Run("sh-ipv6", func(t *testing.T) { sh(t, "[fd00:200::13]:80", bd.Srcs6) })
	t.Run("rr-ipv6", func(t *testing.T) {
		res := lbbed.Probe(t, bd.Client.Name, "tcp", "[fd00:200::10]:80", 8, one, 0)
		assertCycle(t, "rr ipv6", lbbed.Names(res), map[string]int{"r1": 1, "r2": 1})
	})
	t.Logf("status %+v", b.Status())
}
