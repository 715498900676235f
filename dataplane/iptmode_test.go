package dataplane

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/model"
)

// Backend detection against namespaces set up the way nodes are: kubelet's
// hint chain in one backend, or only other users' rules, or nothing.
func TestDetectIPTablesMode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup [][]string
		want  IPTablesMode
		why   string
	}{
		{name: "empty node", want: ModeNFT, why: "no kubelet chains"},
		{name: "kubelet hint in legacy", want: ModeLegacy, why: "KUBE-IPTABLES-HINT chain is in the legacy IPv4 mangle",
			setup: [][]string{
				{"iptables-legacy", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"},
				// More nft rules than legacy ones: the hint still wins.
				{"iptables-nft", "-N", "OTHER"}, {"iptables-nft", "-A", "OTHER", "-j", "ACCEPT"}, {"iptables-nft", "-A", "OTHER", "-j", "DROP"},
			}},
		{name: "kubelet hint in nft (v6 only)", want: ModeNFT, why: "KUBE-IPTABLES-HINT chain is in the nft IPv6 mangle",
			setup: [][]string{{"ip6tables-nft", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"}, {"iptables-legacy", "-A", "INPUT", "-j", "ACCEPT"}}},
		{name: "old kubelet canary in legacy", want: ModeLegacy, why: "KUBE-KUBELET-CANARY",
			setup: [][]string{{"iptables-legacy", "-t", "mangle", "-N", "KUBE-KUBELET-CANARY"}}},
		{name: "legacy rules only", want: ModeLegacy, why: "legacy holds 2 rules, nft 0",
			setup: [][]string{{"iptables-legacy", "-A", "INPUT", "-j", "ACCEPT"}, {"ip6tables-legacy", "-A", "INPUT", "-j", "ACCEPT"}}},
		{name: "nft rules only", want: ModeNFT, why: "nft holds 1 rules, legacy 0",
			setup: [][]string{{"iptables-nft", "-A", "FORWARD", "-j", "ACCEPT"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testns.New(t, "ipm")
			for _, c := range tc.setup {
				ns.MustRun(c[0], c[1:]...)
			}
			got, why, err := detectIPTablesMode(context.Background(), execIPTables{prefix: []string{"ip", "netns", "exec", ns.Name}})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Fatalf("detected %s (%s), want %s (%s)", got, why, tc.want, tc.why)
			}
		})
	}
}

// On a node whose other iptables users are on the legacy backend, the
// agent's chains go there too (and nowhere else), traffic flows, status and
// the metric say which backend and why, and cleanup finds them.
func TestDataplaneOnLegacyNode(t *testing.T) {
	b := newBed(t, 1)
	e := b.edge
	e.MustRun("iptables-legacy", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT")
	reg := prometheus.NewRegistry()
	d := New(Options{Masquerade: true, Netlink: e.Handle(), CommandPrefix: []string{"ip", "netns", "exec", e.Name}, Registerer: reg})
	web := vs("l", "web", "10.200.0.62", 80, model.TCP, model.RoundRobin, realV4(1))
	reconcile(t, d, web)
	if legacy := e.MustRun("iptables-legacy-save", "-t", "nat"); !strings.Contains(legacy, ChainPrefix) {
		t.Fatalf("no EDGE- chains in the legacy nat table:\n%s", legacy)
	}
	if nft := e.MustRun("iptables-nft-save"); strings.Contains(nft, ChainPrefix) {
		t.Fatalf("EDGE- chains leaked into nft:\n%s", nft)
	}
	if r := runProbe(t, b.client.Name, "tcp", "10.200.0.62:80", 1, []string{""}, 0); r[0].Name != "r1" {
		t.Fatalf("traffic through legacy rules: %+v", r[0])
	}
	st := d.Status()
	if st.IPTablesMode != "legacy" || !strings.Contains(st.IPTablesModeReason, "KUBE-IPTABLES-HINT") {
		t.Fatalf("status iptables mode = %q (%q)", st.IPTablesMode, st.IPTablesModeReason)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP edgeagent_dataplane_iptables_mode 1 for the iptables backend (nft or legacy) the agent's rules go through.
# TYPE edgeagent_dataplane_iptables_mode gauge
edgeagent_dataplane_iptables_mode{mode="legacy"} 1
`), "edgeagent_dataplane_iptables_mode"); err != nil {
		t.Fatal(err)
	}
	// A second agent (a restart) detects the same backend and adopts: no
	// restore needed.
	d2 := New(Options{Masquerade: true, Netlink: e.Handle(), CommandPrefix: []string{"ip", "netns", "exec", e.Name}})
	reconcile(t, d2, web)
	if d2.ipt().restores != 0 {
		t.Fatalf("restarted agent ran %d restores, want 0 (adopted)", d2.ipt().restores)
	}
	if err := d2.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if legacy := e.MustRun("iptables-legacy-save"); strings.Contains(legacy, ChainPrefix) {
		t.Fatalf("cleanup left EDGE- chains in legacy:\n%s", legacy)
	}
}
