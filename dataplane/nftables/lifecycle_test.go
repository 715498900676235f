package nftables

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/model"
)

// ruleset is the namespace's whole nftables ruleset (what every nftables
// user sees, iptables-nft's tables included), without counters and
// handles. It also proves that nft can parse the agent's table. nft prints
// set elements in the kernel's hash order, which changes when the hash
// table resizes in the background, so elements are sorted within their
// set.
func ruleset(t *testing.T, ns *testns.NS) string {
	t.Helper()
	var out []string
	var elems []string
	for _, l := range strings.Split(ns.MustRun("nft", "-s", "list", "ruleset"), "\n") {
		l = strings.TrimSpace(l)
		in := strings.HasPrefix(l, "elements = {") || len(elems) > 0
		if !in {
			out = append(out, l)
			continue
		}
		l = strings.TrimPrefix(l, "elements = { ")
		end := strings.HasSuffix(l, "}")
		for _, e := range strings.Split(strings.TrimSuffix(l, "}"), ",") {
			if e = strings.TrimSpace(e); e != "" {
				elems = append(elems, e)
			}
		}
		if end {
			slices.Sort(elems)
			out = append(out, "elements = { "+strings.Join(elems, ", ")+" }")
			elems = nil
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// foreign is the ruleset without the agent's table.
func foreign(t *testing.T, ns *testns.NS) string {
	var out []string
	depth := 0
	for _, l := range strings.Split(ruleset(t, ns), "\n") {
		if depth == 0 && l == "table inet edgeagent {" {
			depth = 1
			continue
		}
		if depth > 0 {
			depth += strings.Count(l, "{") - strings.Count(l, "}")
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

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

// TestLifecycle runs the agent's table next to someone else's nftables
// state (a kube-proxy-like nat table, an inet filter table, iptables-nft
// rules, kubelet's chains), which must keep working and stay exactly as it was while the
// agent runs and after it cleans up; the agent's VIPs must work with all
// of it present.
func TestLifecycle(t *testing.T) {
	bd := lbbed.New(t, 3)
	e := bd.Edge
	ctx := context.Background()
	script := `
table ip kube-proxy {
	chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.96.0.10 tcp dport 80 dnat to 10.97.12.2:8080
		ip daddr 10.200.0.24 tcp dport 80 dnat to 10.97.13.2:8080
	}
}
table inet filter {
	chain input { type filter hook input priority filter; policy accept;
		tcp dport 9998 accept
	}
}
`
	cmd := e.Cmd("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v %s", err, out)
	}
	e.MustRun("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-d", "10.96.0.11", "--dport", "80", "-j", "DNAT", "--to-destination", "10.97.11.2:8080")
	e.MustRun("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9997", "-j", "ACCEPT")
	// kubelet's: the canary chains and KUBE-FIREWALL (drops martian
	// traffic to 127/8 from outside).
	for _, tab := range []string{"mangle", "nat", "filter"} {
		e.MustRun("iptables", "-t", tab, "-N", "KUBE-KUBELET-CANARY")
	}
	e.MustRun("iptables", "-N", "KUBE-FIREWALL")
	e.MustRun("iptables", "-A", "KUBE-FIREWALL", "!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
	e.MustRun("iptables", "-I", "INPUT", "-j", "KUBE-FIREWALL")
	e.MustRun("iptables", "-I", "OUTPUT", "-j", "KUBE-FIREWALL")
	e.MustRun("ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "9997", "-j", "ACCEPT")
	before := ruleset(t, e)
	one := []string{""}
	foreignWorks := func(step string) {
		t.Helper()
		if got := foreign(t, e); got != before {
			t.Fatalf("%s: foreign nftables state changed:\n%s", step, lineDiff(before, got))
		}
		for addr, want := range map[string]string{"10.96.0.10:80": "r2", "10.96.0.11:80": "r1"} {
			if r := lbbed.Probe(t, bd.Client.Name, "tcp", addr, 1, one, 0); r[0].Name != want {
				t.Fatalf("%s: foreign service %s: %+v, want %s", step, addr, r[0], want)
			}
		}
	}
	foreignWorks("before the agent")

	b := nsBackend(t, e, Options{Masquerade: true})
	web := lbbed.Service("l", "web", "10.200.0.20", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1), lbbed.RealV4(2))
	dns := lbbed.Service("l", "dns", "10.200.0.20", 53, model.UDP, model.RoundRobin, lbbed.RealV4(1))
	bad := lbbed.Service("l", "bad", "10.200.0.29", 80, model.TCP, model.RoundRobin, lbbed.RealV6(1))
	bd.AddVIPs(t, "10.200.0.20", "10.200.0.21", "10.200.0.22", "10.200.0.23", "10.200.0.24", "fd00:200::20", "fd00:200::21")
	// kube-proxy's table DNATs 10.200.0.24:80 too, at priority dstnat; the
	// agent's chain runs first, and the first nat chain to bind wins.
	clash := lbbed.Service("l", "clash", "10.200.0.24", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1))
	mustSync(t, b, web, dns, bad, clash)
	if rej := b.Rejected(); len(rej) != 1 || rej["l/bad/TCP/80"] == nil || b.Programmed()["l/bad/TCP/80"] {
		t.Fatalf("Rejected = %v, Programmed = %v", b.Rejected(), b.Programmed())
	}
	if p := b.Programmed(); !p["l/web/TCP/80"] || !p["l/dns/UDP/53"] {
		t.Fatalf("Programmed = %v", p)
	}
	hit := func(addr string, n int) map[string]int {
		return lbbed.Counts(lbbed.Probe(t, bd.Client.Name, "tcp", addr, n, one, 0))
	}
	if got := hit("10.200.0.24:80", 3); got["r1"] != 3 {
		t.Fatalf("a VIP another nat table also DNATs: %v, want the agent's real r1", got)
	}
	if got := hit("10.200.0.20:80", 4); got["r1"] != 2 || got["r2"] != 2 {
		t.Fatalf("web with r1,r2: %v", got)
	}
	foreignWorks("after the first sync")
	// nft reads the table back, in JSON too (other tools list the ruleset).
	var js map[string]any
	if err := json.Unmarshal([]byte(e.MustRun("nft", "-j", "list", "ruleset")), &js); err != nil {
		t.Fatalf("nft -j list ruleset: %v", err)
	}

	t.Run("add real, change policy, add service", func(t *testing.T) {
		web.Reals = append(web.Reals, lbbed.RealV4(3))
		api := lbbed.Service("l", "api", "10.200.0.21", 8080, model.TCP, model.WeightedRoundRobin, lbbed.RealV4(2), lbbed.RealV4(3))
		api.Reals[0].Weight = 2
		mustSync(t, b, web, dns, api)
		if got := hit("10.200.0.20:80", 6); got["r1"] != 2 || got["r2"] != 2 || got["r3"] != 2 {
			t.Fatalf("web with r1-r3: %v", got)
		}
		if got := hit("10.200.0.21:8080", 6); got["r2"] != 4 || got["r3"] != 2 {
			t.Fatalf("api wrr 2:1: %v", got)
		}
		batches := b.Status().Batches
		web.Policy = model.SourceHash
		mustSync(t, b, web, dns, api)
		if n := b.Status().Batches - batches; n != 1 {
			t.Fatalf("a policy change took %d batches", n)
		}
		if got := hit("10.200.0.20:80", 6); len(got) != 1 {
			t.Fatalf("sh from one source must hit one real: %v", got)
		}
		// Back to rr: one real's worth of elements, not a rewrite. The sh
		// selector's set and rule go (no other service uses it).
		writes := b.Status().ElementWrites
		web.Policy = model.RoundRobin
		mustSync(t, b, web, dns, api)
		if n := b.Status().ElementWrites - writes; n > 3+1+1+4200 {
			t.Fatalf("changing one service wrote %d elements", n)
		}
		if strings.Contains(ruleset(t, e), "fe4_sh_") {
			t.Fatalf("unused selector set left behind:\n%s", ruleset(t, e))
		}
		mustSync(t, b, web, dns) // api removed
		if r := lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.21:8080", 1, one, 0); r[0].Err == "" {
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
		six := lbbed.Service("l", "six", "fd00:200::21", 80, model.TCP, model.RoundRobin)
		mustSync(t, b, down, udpDown, six)
		for _, c := range []struct{ proto, addr string }{{"tcp", "10.200.0.20:80"}, {"udp", "10.200.0.20:53"}, {"tcp", "[fd00:200::21]:80"}} {
			r := lbbed.Probe(t, bd.Client.Name, c.proto, c.addr, 1, one, 0)
			if !strings.Contains(r[0].Err, "connection refused") {
				t.Fatalf("%s %s without reals: %+v, want connection refused (reset / port unreachable)", c.proto, c.addr, r[0])
			}
		}
		if !b.Programmed()["l/web/TCP/80"] {
			t.Fatal("a rejecting service is programmed too")
		}
		mustSync(t, b, web, dns)
	})

	t.Run("masquerade off", func(t *testing.T) {
		plain := nsBackend(t, e, Options{})
		mustSync(t, plain, web, dns)
		for _, r := range lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.20:80", 3, one, 0) {
			if !strings.HasPrefix(r.Peer, "10.97.1.2:") {
				t.Fatalf("without masquerade the real must see the client: %+v", r)
			}
		}
		b.Resync()
		mustSync(t, b, web, dns)
		for _, r := range lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.20:80", 3, one, 0) {
			if strings.HasPrefix(r.Peer, "10.97.1.2:") {
				t.Fatalf("masquerade back on, but the real sees the client: %+v", r)
			}
		}
	})

	b2 := nsBackend(t, e, Options{Masquerade: true}) // outlives the subtest
	t.Run("second instance adopts with zero writes", func(t *testing.T) {
		// Every policy and family, so every element and rule form must read
		// back exactly as written.
		six := lbbed.Service("l", "web6", "fd00:200::20", 80, model.TCP, model.SourceHash, lbbed.RealV6(1), lbbed.RealV6(2))
		rnd := lbbed.Service("l", "rnd", "10.200.0.22", 80, model.TCP, model.Random, lbbed.RealV4(1), lbbed.RealV4(2), lbbed.RealV4(3))
		rnd.Reals[2].Weight = 5
		wrr := lbbed.Service("l", "wrr", "10.200.0.23", 80, model.UDP, model.WeightedRoundRobin, lbbed.RealV4(1), lbbed.RealV4(2))
		wrr.Reals[0].Weight = 3
		rej6 := lbbed.Service("l", "rej6", "fd00:200::21", 53, model.UDP, model.RoundRobin)
		all := []model.VirtualService{web, dns, six, rnd, wrr, rej6}
		mustSync(t, b, all...)
		snap := ruleset(t, e)
		mustSync(t, b2, all...)
		if st := b2.Status(); st.Batches != 0 || st.ElementWrites != 0 || st.Reads != 1 || st.Elements == 0 || st.SelectorRules == 0 {
			t.Fatalf("second instance wrote to the kernel, or reports no elements: %+v", st)
		}
		if after := ruleset(t, e); after != snap {
			t.Fatalf("ruleset changed on adoption:\n%s", lineDiff(snap, after))
		}
		if len(b2.Programmed()) != len(all) {
			t.Fatalf("adopted Programmed = %v", b2.Programmed())
		}
		mustSync(t, b2, all...)
		if st := b2.Status(); st.Batches != 0 || st.Reads != 1 {
			t.Fatalf("repeated sync: %+v", st)
		}
		b = b2
	})
	foreignWorks("after syncs")

	t.Run("cleanup removes exactly the table", func(t *testing.T) {
		if err := b.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if after := ruleset(t, e); after != before {
			t.Fatalf("cleanup left a difference:\n%s", lineDiff(before, after))
		}
		if err := b.Cleanup(ctx); err != nil {
			t.Fatalf("second cleanup: %v", err)
		}
		if after := ruleset(t, e); after != before {
			t.Fatalf("second cleanup changed something:\n%s", after)
		}
	})
	foreignWorks("after cleanup")
}

// TestForwardDropIsReported: a base chain at the forward hook with policy
// drop in someone else's table drops load-balanced traffic, and the
// agent's table cannot accept it past that chain; the backend says so,
// and accepting the agent's connection mark there fixes it.
func TestForwardDropIsReported(t *testing.T) {
	bd := lbbed.New(t, 1)
	e := bd.Edge
	e.MustRun("nft", "add table inet fw")
	e.MustRun("nft", "add chain inet fw forward { type filter hook forward priority 0; policy drop; }")
	b := nsBackend(t, e, Options{Masquerade: true})
	bd.AddVIPs(t, "10.200.0.70")
	mustSync(t, b, lbbed.Service("w", "web", "10.200.0.70", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1)))
	w := b.Status().Warnings
	if len(w) != 1 || !strings.Contains(w[0], "inet fw chain forward") || !strings.Contains(w[0], "policy drop") {
		t.Fatalf("warnings = %q", w)
	}
	if r := lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.70:80", 1, []string{""}, 0); r[0].Err == "" {
		t.Fatalf("traffic passed a forward chain with policy drop: %+v", r[0])
	}
	e.MustRun("nft", "add rule inet fw forward ct mark & 0x2000 == 0x2000 accept")
	if r := lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.70:80", 1, []string{""}, 0); r[0].Name != "r1" {
		t.Fatalf("with the mark accepted: %+v", r[0])
	}
}
