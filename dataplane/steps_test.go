package dataplane

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/model"
)

// readOnlySysctls runs commands in ns with /proc/sys read-only, as in a
// container without privileges: the agent's own container in the DaemonSet.
func readOnlySysctls(ns *testns.NS) []string {
	return []string{"ip", "netns", "exec", ns.Name, "unshare", "--mount", "--",
		"sh", "-c", `mount --bind -o ro /proc/sys /proc/sys && exec "$@"`, "sh"}
}

// A node with forwarding off and an agent that may not switch it on: the
// sysctl step fails and says so (status, metric, the sync's error), but the
// VIP and the rules still go in; once forwarding is on (prepare-node, or an
// operator) the next resync finds it and the failure clears.
func TestSysctlFailureDoesNotStopTheOtherSteps(t *testing.T) {
	b := newBed(t, 1)
	e := b.edge
	e.MustRun("sysctl", "-w", "net.ipv4.ip_forward=0")
	d := New(Options{Masquerade: true, Netlink: e.Handle(), CommandPrefix: readOnlySysctls(e)})
	web := vs("s", "web", "10.200.0.60", 80, model.TCP, model.RoundRobin, realV4(1))
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web}})
	// The sysctl tool says "permission denied" where the agent's own write
	// in a container says "read-only file system".
	if err == nil || !strings.Contains(err.Error(), "net.ipv4.ip_forward") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Reconcile = %v, want the sysctl's failure", err)
	}
	if !d.Programmed()[web.Key()] {
		t.Fatal("the rules must go in although the sysctl failed")
	}
	if out := e.MustRun("ip", "addr", "show", "edge-vip0"); !strings.Contains(out, "10.200.0.60/32") {
		t.Fatalf("the VIP must go on although the sysctl failed: %s", out)
	}
	if s := iptablesState(t, e); !strings.Contains(s, "10.97.11.2:8080") {
		t.Fatalf("no DNAT to the real:\n%s", s)
	}
	st := d.Status()
	if len(st.Failures) != 1 || st.Failures[0].Step != stepSysctl || st.FailingSince.IsZero() {
		t.Fatalf("status failures = %+v since %v, want the sysctl step", st.Failures, st.FailingSince)
	}
	if st.Sysctls[sysctlIPv4Forward] != "0" {
		t.Fatalf("status sysctls = %v, want ip_forward 0 (what the node has)", st.Sysctls)
	}
	if v := testutil.ToFloat64(d.metrics.failing.WithLabelValues(stepSysctl)); v != 1 {
		t.Fatalf("edgeagent_dataplane_step_failing{step=sysctl} = %v, want 1", v)
	}
	if v := testutil.ToFloat64(d.metrics.failing.WithLabelValues(stepRulesV4)); v != 0 {
		t.Fatalf("edgeagent_dataplane_step_failing{step=iptables-ipv4} = %v, want 0", v)
	}
	since := st.FailingSince
	// A retry keeps failing, from the same moment.
	_ = d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{web}})
	if st := d.Status(); !st.FailingSince.Equal(since) {
		t.Fatalf("FailingSince moved on a retry: %v, was %v", st.FailingSince, since)
	}

	e.MustRun("sysctl", "-w", "net.ipv4.ip_forward=1")
	d.Resync()
	reconcile(t, d, web)
	st = d.Status()
	if len(st.Failures) != 0 || !st.FailingSince.IsZero() || st.Sysctls[sysctlIPv4Forward] != "1" {
		t.Fatalf("after forwarding came on: failures %+v since %v sysctls %v", st.Failures, st.FailingSince, st.Sysctls)
	}
	if v := testutil.ToFloat64(d.metrics.failing.WithLabelValues(stepSysctl)); v != 0 {
		t.Fatalf("edgeagent_dataplane_step_failing{step=sysctl} = %v after the fix, want 0", v)
	}
	if r := runProbe(t, b.client.Name, "tcp", "10.200.0.60:80", 1, []string{""}, 0); r[0].Name != "r1" {
		t.Fatalf("traffic after forwarding came on: %+v", r[0])
	}
}

// Forwarding turned off behind the agent's back is found at the next resync
// and switched on again (the agent may write /proc/sys here).
func TestResyncRestoresForwarding(t *testing.T) {
	b := newBed(t, 1)
	e := b.edge
	d := b.dataplane(t, true)
	web := vs("s", "web", "10.200.0.61", 80, model.TCP, model.RoundRobin, realV4(1))
	reconcile(t, d, web)
	e.MustRun("sysctl", "-w", "net.ipv4.ip_forward=0")
	d.Resync()
	reconcile(t, d, web)
	if got := strings.TrimSpace(e.MustRun("sysctl", "-n", "net.ipv4.ip_forward")); got != "1" {
		t.Fatalf("ip_forward = %s after a resync, want 1", got)
	}
}

// The agent binary runs in the namespace it programs, without a command
// prefix (on the host, or under `ip netns exec` as in every test of the
// binary): there go-iptables reads the chosen backend's version and checks,
// after reading and syncing the rules, that the backend's own iptables
// sees the agent's entry jump.
func TestGoIPTablesWithoutPrefix(t *testing.T) {
	ns := testns.New(t, "gi")
	out, err := helperCmd(ns.Name, "EDGE_TEST_ROLE=sync").Output()
	if err != nil {
		t.Fatalf("sync helper: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var chosen struct {
		Msg, Mode, Version string
	}
	for _, l := range lines {
		if strings.Contains(l, "iptables backend chosen") {
			if err := json.Unmarshal([]byte(l), &chosen); err != nil {
				t.Fatal(err)
			}
		}
	}
	if chosen.Mode != "nft" || !regexp.MustCompile(`^v1\.\d+\.\d+$`).MatchString(chosen.Version) {
		t.Fatalf("log of the choice = %+v, want mode nft and the version go-iptables read:\n%s", chosen, out)
	}
	var res struct {
		Failures   []string
		Programmed map[string]bool
		Error      string
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 0 || res.Error != "<nil>" || !res.Programmed["h/web/TCP/80"] {
		t.Fatalf("sync without a prefix: %+v", res)
	}
	// What the check asked, asked the same way by hand.
	if out := ns.MustRun("iptables-nft", "-t", "nat", "-C", "PREROUTING", "-m", "comment", "--comment", "edgeagent: virtual services", "-j", "EDGE-SERVICES"); out != "" {
		t.Fatalf("iptables -C printed %q", out)
	}
}

// PrepareNode is what the privileged init container runs.
func TestPrepareNodeSetsForwarding(t *testing.T) {
	ns := testns.New(t, "prep")
	ns.MustRun("sysctl", "-w", "net.ipv4.ip_forward=0")
	ns.MustRun("sysctl", "-w", "net.ipv6.conf.all.forwarding=0")
	// PrepareNode works on the process's own namespace; run it through
	// the test binary's helper mode so the test process stays put.
	out, err := helperCmd(ns.Name, "EDGE_TEST_ROLE=prepare").CombinedOutput()
	if err != nil {
		t.Fatalf("prepare-node helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "net.ipv4.ip_forward=0") || !strings.Contains(string(out), "net.ipv6.conf.all.forwarding=0") {
		t.Fatalf("helper must report the values it found:\n%s", out)
	}
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if got := strings.TrimSpace(ns.MustRun("sysctl", "-n", k)); got != "1" {
			t.Fatalf("%s = %s after PrepareNode, want 1", k, got)
		}
	}
}

// /status and /readyz read Rejected, Programmed and Status while a sync may
// be running an iptables-restore of seconds: none of them may wait for it.
func TestReadersDoNotWaitForASync(t *testing.T) {
	d := New(Options{})
	d.mu.Lock() // a sync in progress
	defer d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		d.Rejected()
		d.Programmed()
		d.Status()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Rejected/Programmed/Status wait for the sync's lock")
	}
}

// Source hash over more than six reals: iptables 1.8.9 refuses a
// --cluster-local-nodemask above 32, so buckets are one rule each with
// --cluster-local-node; iptables-save prints them back as masks, which a
// restarted agent must still recognise as its own (no rewrite).
func TestSourceHashManyRealsProgramsAndAdopts(t *testing.T) {
	b := newBed(t, 1)
	d := b.dataplane(t, true)
	var reals []model.Real
	for i := 1; i <= 40; i++ { // 40: also past xt_cluster's 32 buckets
		reals = append(reals, real(fmt.Sprintf("10.97.2.%d:8080", i), uint32(1+i%3)))
	}
	sh := vs("s", "sh", "10.200.0.63", 80, model.TCP, model.SourceHash, reals...)
	reconcile(t, d, sh)
	if !d.Programmed()[sh.Key()] {
		t.Fatal("sh service with 40 reals not programmed")
	}
	saved := b.edge.MustRun("iptables-save", "-t", "nat")
	if !strings.Contains(saved, "--cluster-local-nodemask 0x00000040") {
		t.Fatalf("expected bucket 7's rule (mask 0x40) in the kernel:\n%s", saved)
	}
	d2 := b.dataplane(t, true)
	reconcile(t, d2, sh)
	if d2.ipt().restores != 0 {
		t.Fatalf("a restarted agent rewrote the sh chains (%d restores): saved masks not recognised", d2.ipt().restores)
	}
}
