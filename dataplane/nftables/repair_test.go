package nftables

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/model"
)

func TestUDPConntrackOfDepartedReal(t *testing.T) {
	bd := lbbed.New(t, 2)
	b := nsBackend(t, bd.Edge, Options{Masquerade: true})
	bd.AddVIPs(t, "10.200.0.30")
	dns := lbbed.Service("u", "dns", "10.200.0.30", 53, model.UDP, model.RoundRobin, lbbed.RealV4(1), lbbed.RealV4(2))
	mustSync(t, b, dns)
	// One client socket (fixed source port): one conntrack entry, so every
	// datagram sticks to the real the first one was sent to.
	src := []string{"10.97.1.2"}
	first := lbbed.Names(lbbed.Probe(t, bd.Client.Name, "udp", "10.200.0.30:53", 3, src, 40053))
	if first[0] != first[1] || first[1] != first[2] || strings.HasPrefix(first[0], "error") {
		t.Fatalf("one flow must stick to one real: %v", first)
	}
	gone := map[string]int{"r1": 0, "r2": 1}[first[0]]
	dns.Reals[gone].Healthy = false
	mustSync(t, b, dns)
	after := lbbed.Names(lbbed.Probe(t, bd.Client.Name, "udp", "10.200.0.30:53", 3, src, 40053))
	for _, n := range after {
		if n == first[0] {
			t.Fatalf("flow still goes to departed real %s: %v (its conntrack entry should be gone)", first[0], after)
		}
	}
	if out := bd.Edge.MustRun("conntrack", "-L", "-p", "udp", "--reply-src", fmt.Sprintf("10.97.1%d.2", gone+1)); strings.Contains(out, "dport=53") {
		t.Fatalf("conntrack still holds flows of the departed real:\n%s", out)
	}
}

func TestTCPDrainOfIneligibleReal(t *testing.T) {
	bd := lbbed.New(t, 2)
	b := nsBackend(t, bd.Edge, Options{Masquerade: true})
	bd.AddVIPs(t, "10.200.0.60")
	web := lbbed.Service("t", "web", "10.200.0.60", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1), lbbed.RealV4(2))
	mustSync(t, b, web)
	h := lbbed.OpenHold(t, bd.Client.Name, "10.200.0.60:80")
	// The real the connection landed on turns terminating: no new
	// connections, but the established one keeps working.
	i := map[string]int{"r1": 0, "r2": 1}[h.First.Name]
	web.Reals[i].Terminating = true
	mustSync(t, b, web)
	for _, r := range lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.60:80", 4, []string{""}, 0) {
		if r.Name == h.First.Name {
			t.Fatalf("new connection went to draining real %s", r.Name)
		}
	}
	if again := h.Again(t); again.Err != "" || again.Name != h.First.Name {
		t.Fatalf("established connection to %s after it left: %+v", h.First.Name, again)
	}
}

// TestResyncRepairsTampering: without Resync the backend trusts what it
// wrote (no reads, no writes); after it, every kind of damage is repaired
// and traffic flows again.
func TestResyncRepairsTampering(t *testing.T) {
	bd := lbbed.New(t, 2)
	e := bd.Edge
	b := nsBackend(t, e, Options{Masquerade: true})
	bd.AddVIPs(t, "10.200.0.50", "10.200.0.51")
	web := lbbed.Service("r", "web", "10.200.0.50", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1), lbbed.RealV4(2))
	rej := lbbed.Service("r", "rej", "10.200.0.51", 80, model.TCP, model.RoundRobin)
	mustSync(t, b, web, rej)
	want := ruleset(t, e)
	works := func(step string) {
		t.Helper()
		if got := lbbed.Counts(lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.50:80", 4, []string{""}, 0)); got["r1"] != 2 || got["r2"] != 2 {
			t.Fatalf("%s: web %v", step, got)
		}
		if r := lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.51:80", 1, []string{""}, 0); !strings.Contains(r[0].Err, "refused") {
			t.Fatalf("%s: rej %+v", step, r[0])
		}
	}
	for _, tc := range []struct{ name, script string }{
		{"element deleted", "delete element inet edgeagent slots4 { tcp . 10.200.0.50 . 80 . 0x00000001 }"},
		{"element changed", "delete element inet edgeagent slots4 { tcp . 10.200.0.50 . 80 . 0x00000001 }\nadd element inet edgeagent slots4 { tcp . 10.200.0.50 . 80 . 0x00000001 : 10.97.11.2 . 8080 }"},
		{"frontend deleted", "delete element inet edgeagent fe4_inc_2 { tcp . 10.200.0.50 . 80 }"},
		{"foreign element", "add element inet edgeagent fe4_inc_2 { tcp . 10.200.0.99 . 80 }"},
		{"reject deleted", "flush set inet edgeagent reject4"},
		{"selector rule deleted", "flush chain inet edgeagent services"},
		{"selector rule and set deleted", "flush chain inet edgeagent services\ndelete set inet edgeagent fe4_inc_2"},
		{"foreign rule", "add rule inet edgeagent services counter"},
		{"jump deleted", "flush chain inet edgeagent prerouting"},
		{"base chain deleted", "flush chain inet edgeagent input\ndelete chain inet edgeagent input"},
		{"chain priority changed", "delete chain inet edgeagent postrouting\nadd chain inet edgeagent postrouting { type nat hook postrouting priority 200; }\nadd rule inet edgeagent postrouting ct mark and 0x2000 == 0x2000 masquerade"},
		{"foreign chain", "add chain inet edgeagent extra"},
		{"table deleted", "delete table inet edgeagent"},
		{"table dormant", "add table inet edgeagent { flags dormant; }"},
		{"flush ruleset", "flush ruleset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := e.Cmd("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(tc.script + "\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tamper: %v %s", err, out)
			}
			st := b.Status()
			mustSync(t, b, web, rej)
			if now := b.Status(); now.Batches != st.Batches || now.Reads != st.Reads {
				t.Fatalf("without Resync the backend must trust what it wrote: %+v then %+v", st, now)
			}
			b.Resync()
			mustSync(t, b, web, rej)
			if got := ruleset(t, e); got != want {
				t.Fatalf("Resync did not repair:\n%s", lineDiff(want, got))
			}
			works("after repair")
			b.Resync()
			mustSync(t, b, web, rej)
			if now := b.Status(); now.Batches != st.Batches+1 {
				t.Fatalf("a second Resync of a repaired table wrote again: %+v then %+v", st, now)
			}
		})
	}
}

// TestWriteFailureRecovers: a write that the kernel refuses (here because
// someone deleted an element the batch deletes) leaves the table as it
// was; the backend reads the table and retries at once, and converges.
func TestWriteFailureRecovers(t *testing.T) {
	bd := lbbed.New(t, 2)
	e := bd.Edge
	b := nsBackend(t, e, Options{Masquerade: true})
	bd.AddVIPs(t, "10.200.0.40")
	web := lbbed.Service("f", "web", "10.200.0.40", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1), lbbed.RealV4(2))
	mustSync(t, b, web)
	e.MustRun("nft", "delete", "element", "inet", "edgeagent", "slots4", "{ tcp . 10.200.0.40 . 80 . 0x00000001 }")
	web.Reals = web.Reals[:1] // the next batch deletes that element
	st := b.Status()
	if err := b.Sync(context.Background(), []model.VirtualService{web}); err != nil {
		t.Fatalf("sync after tampering: %v (it should have re-read and retried)", err)
	}
	if now := b.Status(); now.Reads != st.Reads+1 || now.LastError != "" {
		t.Fatalf("status after the retry: %+v", now)
	}
	if got := lbbed.Counts(lbbed.Probe(t, bd.Client.Name, "tcp", "10.200.0.40:80", 3, []string{""}, 0)); got["r1"] != 3 {
		t.Fatalf("after the retry: %v", got)
	}
}

// TestWriteRefused: a batch the kernel refuses outright (a table name
// longer than nf_tables allows) is an error, in Status too, and nothing is
// reported programmed.
func TestWriteRefused(t *testing.T) {
	bd := lbbed.New(t, 1)
	b := nsBackend(t, bd.Edge, Options{Table: strings.Repeat("x", 300)})
	web := lbbed.Service("f", "web", "10.200.0.40", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1))
	err := b.Sync(context.Background(), []model.VirtualService{web})
	if err == nil {
		t.Fatal("sync into an impossible table succeeded")
	}
	t.Logf("expected error: %v", err)
	if st := b.Status(); st.LastError == "" || st.Batches != 0 {
		t.Fatalf("status after a refused write: %+v", st)
	}
	if p := b.Programmed(); len(p) != 0 {
		t.Fatalf("Programmed after a refused write: %v", p)
	}
	// The same backend pointed at a table it can write: the services that
	// changed during the failed sync are reported once the write succeeds,
	// though the input is the same.
	b.mu.Lock()
	b.opt.Table, b.lay.table = DefaultTable, DefaultTable
	b.k.t.Name = DefaultTable
	b.mu.Unlock()
	mustSync(t, b, web)
	if p := b.Programmed(); !p["f/web/TCP/80"] {
		t.Fatalf("Programmed after a successful retry of the same input: %v", p)
	}
}
