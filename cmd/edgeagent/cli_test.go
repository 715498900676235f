package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/spf13/pflag"
)

// These tests drive the real binary, as a user would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgeagent-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "edgeagent")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return buf.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.String(), 0
}

func TestValidateExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	out, code := runCLI(t, append([]string{"validate"}, files...)...)
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("validate examples: exit %d\n%s", code, out)
	}
}

func TestValidateBadFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec:
  vsIP: 10.200.0.300
  ports: [{port: 0}, {port: 443, protocol: SCTP}]
  policy: fastest
  realServers: [{ip: 10.244.1.10, weight: 0}]
---
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: typo, namespace: shop}
spec: {vsIp: 10.200.0.1}
`), 0o644)
	out, code := runCLI(t, "validate", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		bad + ": shop/web: spec.vsIP: \"10.200.0.300\" is not an IP address",
		bad + ": shop/web: spec.ports[0].port: must be 1-65535, got 0",
		bad + ": shop/web: spec.ports[1].protocol: \"SCTP\" is not TCP or UDP",
		bad + ": shop/web: spec.policy: \"fastest\" is not one of rr, wrr, random, sh",
		bad + ": shop/web: spec.realServers[0].weight: must be 1-100, got 0",
		bad + ": document 1: decode LBRoute: unknown field \"spec.vsIp\"",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q\n%s", want, out)
		}
	}
}

// An explicit zero is a value, refused as the apiserver refuses it (the
// parity corpus in translate/testdata/parity covers every rule); it is not
// read as "unset".
func TestValidateExplicitZeros(t *testing.T) {
	f := filepath.Join(t.TempDir(), "zeros.yaml")
	os.WriteFile(f, []byte(`apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: zeros, namespace: shop}
spec:
  vsIP: 10.200.0.10
  ports: [{port: 80}]
  realServers: [{ip: 10.244.1.10, port: 0}]
  healthCheck: {intervalSeconds: 0, timeoutSeconds: 0, riseCount: 0, fallCount: 0}
`), 0o644)
	out, code := runCLI(t, "validate", f)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"spec.realServers[0].port: must be 1-65535, got 0",
		"spec.healthCheck.intervalSeconds: must be 1-3600 seconds, got 0",
		"spec.healthCheck.timeoutSeconds: must be 1-3600 seconds, got 0",
		"spec.healthCheck.riseCount: must be 1-100, got 0",
		"spec.healthCheck.fallCount: must be 1-100, got 0",
	} {
		if !strings.Contains(out, f+": shop/zeros: "+want+"\n") {
			t.Errorf("output lacks %q\n%s", want, out)
		}
	}
}

// An agent config whose APV device URL is http:// is refused by validate,
// with the field and the reason.
func TestValidateAPVURL(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte(`nodeName: edge-1
apv:
  devices:
  - {name: apv-a, url: "http://192.0.2.10:9997", usernameFile: u, passwordFile: p}
`), 0o644)
	out, code := runCLI(t, "validate", cfg)
	if want := cfg + `: config: apv.devices[0].url: "http://192.0.2.10:9997" must be an https:// URL`; code != 1 || !strings.Contains(out, want) {
		t.Fatalf("exit %d, output:\n%s\nwant a line starting %q", code, out, want)
	}
}

// dataplane.backend is checked by validate, with the field and the values
// it takes; both values are accepted.
func TestValidateDataplaneBackend(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ value, want string }{
		{"nftables", ""},
		{"iptables", ""},
		{"nft", `: config: dataplane.backend: "nft" is not iptables or nftables`},
	} {
		cfg := filepath.Join(dir, tc.value+".yaml")
		os.WriteFile(cfg, []byte("nodeName: edge-1\ndataplane: {backend: "+tc.value+"}\n"), 0o644)
		out, code := runCLI(t, "validate", cfg)
		if tc.want == "" && code != 0 {
			t.Errorf("backend %s: exit %d\n%s", tc.value, code, out)
		}
		if tc.want != "" && (code != 1 || !strings.Contains(out, cfg+tc.want)) {
			t.Errorf("backend %s: exit %d, output:\n%s\nwant %q", tc.value, code, out, cfg+tc.want)
		}
	}
}

func TestValidatePoolsFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("vipPools: [{cidr: 10.200.0.0/24}]\n"), 0o644)
	rt := filepath.Join(dir, "r.yaml")
	os.WriteFile(rt, []byte(`apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec: {vsIP: 192.0.2.1, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}]}
`), 0o644)
	out, code := runCLI(t, "validate", cfg, rt)
	if code != 1 || !strings.Contains(out, "spec.vsIP: 192.0.2.1 is in no VIP pool that admits namespace \"shop\"") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestRunBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("source: {dir: .}\nvipPools: [{cidr: 10.200.0.0/33}]\nbgp: {peers: [{address: nope}]}\n"), 0o644)
	out, code := runCLI(t, "run", "--config", cfg)
	if code == 0 || !strings.Contains(out, "vipPools[0].cidr") || !strings.Contains(out, "bgp.peers[0].address") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	os.WriteFile(cfg, []byte("sourc: {dir: .}\n"), 0o644)
	out, code = runCLI(t, "run", "--config", cfg)
	if code == 0 || !strings.Contains(out, `unknown field "sourc"`) {
		t.Fatalf("misspelt field: exit %d\n%s", code, out)
	}
}

// getStatus asks the agent in ns for /status the way a user does.
func getStatus(ns *testns.NS, addr string) (status.Report, error) {
	var r status.Report
	out, err := ns.Cmd(binary, "status", "-o", "json", "--admin-address", addr).Output()
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(out, &r)
}

// TestRunStandalone runs the agent on a directory, changes a file and
// waits for /status to show it; then stops it with SIGTERM. The agent
// programs the kernel, so it runs in a network namespace of its own.
func TestRunStandalone(t *testing.T) {
	ns := testns.New(t, "cli")
	dir := t.TempDir()
	admin, metricsAddr := "127.0.0.1:9561", "127.0.0.1:9560"
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`nodeName: test-edge
source: {dir: .}
vipPools: [{cidr: 10.200.0.0/24}]
bgp: {enabled: false}
adminAddress: %q
metricsAddress: %q
`, admin, metricsAddr)), 0o644)
	os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(`apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec: {vsIP: 10.200.0.10, ports: [{port: 80}, {port: 53, protocol: UDP}], realServers: [{ip: 10.244.1.10}]}
`), 0o644)

	cmd := ns.Cmd(binary, "run", "--config", cfg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})

	// Every 20 ms: how soon a file change shows is logged.
	waitFor := func(what string, ok func(status.Report) bool) time.Duration {
		t.Helper()
		return poll.Every(20*time.Millisecond).Until(t, 15*time.Second, what, func() (bool, string) {
			r, err := getStatus(ns, admin)
			return err == nil && ok(r), fmt.Sprintf("status %+v (%v)", r, err)
		})
	}
	waitFor("two virtual services", func(r status.Report) bool {
		return r.Ready && r.Node == "test-edge" && r.Mode == "standalone" && len(r.VirtualServices) == 2
	})

	outb, err := ns.Cmd(binary, "status", "--admin-address", admin).CombinedOutput()
	out := string(outb)
	if err != nil || !strings.Contains(out, "shop/web/TCP/80") || !strings.Contains(out, "10.244.1.10:80") {
		t.Fatalf("status table: %v\n%s", err, out)
	}
	outb, err = ns.Cmd(binary, "status", "-o", "json", "--config", cfg).Output()
	var rep status.Report
	if err != nil || json.Unmarshal(outb, &rep) != nil || len(rep.VirtualServices) != 2 {
		t.Fatalf("status -o json: %v\n%s", err, outb)
	}
	if !rep.VirtualServices[0].Programmed || rep.Dataplane == nil || rep.Dataplane.Interface != "edge-vip0" {
		t.Fatalf("virtual services not programmed in the namespace: %+v %+v", rep.VirtualServices, rep.Dataplane)
	}
	if addrs := ns.MustRun("ip", "-4", "addr", "show", "dev", "edge-vip0"); !strings.Contains(addrs, "10.200.0.10/32") {
		t.Fatalf("VIP not on edge-vip0:\n%s", addrs)
	}

	// Change the file: the new real must show up.
	os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(`apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec: {vsIP: 10.200.0.10, ports: [{port: 80}], realServers: [{ip: 10.244.1.10}, {ip: 10.244.2.10}]}
`), 0o644)
	took := waitFor("the edited route", func(r status.Report) bool {
		return len(r.VirtualServices) == 1 && len(r.VirtualServices[0].Reals) == 2
	})
	t.Logf("file change visible in /status after %v", took)

	// A bad file is reported and leaves the good route alone.
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: apv.arraynetworks.com/v1alpha1\nkind: LBRoute\nmetadata: {name: bad}\nspec: {vsIP: 10.200.0.11, ports: [{port: 70000}], realServers: [{ip: 10.244.1.10}]}\n"), 0o644)
	waitFor("the bad file reported", func(r status.Report) bool {
		return len(r.SourceErrors) == 1 && strings.Contains(r.SourceErrors[0].Error, "spec.ports[0].port") && len(r.VirtualServices) == 1
	})

	body := ns.MustRun("curl", "-sf", "http://"+metricsAddr+"/metrics")
	for _, m := range []string{"edgeagent_build_info{", "go_goroutines", "process_resident_memory_bytes", "edgeagent_virtual_services 1", "edgeagent_source_bad_objects 1"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Fatalf("no clean stop in the log:\n%s", logs.String())
	}

	// cleanup leaves the namespace with no trace of the agent.
	ns.MustRun(binary, "cleanup", "--config", cfg)
	if out, _ := ns.Run("ip", "link", "show", "edge-vip0"); !strings.Contains(out, "does not exist") {
		t.Fatalf("edge-vip0 still there after cleanup: %s", out)
	}
	if out := ns.MustRun("iptables-save"); strings.Contains(out, "EDGE-") {
		t.Fatalf("EDGE- rules left after cleanup:\n%s", out)
	}
}

// Flags override the file, field by field; fields without a flag keep the
// file's value.
func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("nodeName: from-file\nbgp: {asn: 65000, peers: [{address: 10.0.0.1}]}\nhealthCheck: {holdTime: 3s}\n"), 0o644)
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	var ov overrides
	ov.register(fs)
	if err := fs.Parse([]string{"--node-name", "from-flag", "--bgp-peer", "10.0.0.9:64999:1179", "--healthcheck-concurrency", "7", "--bgp-node-peers", "edge=true",
		"--dataplane-iptables-mode", "legacy", "--dataplane-backend", "nftables", "--dataplane-failure-grace-period", "45s", "--bgp-import-metric", "2000"}); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(cfg, fs, &ov)
	if err != nil {
		t.Fatal(err)
	}
	p := c.BGP.Peers
	switch {
	case c.NodeName != "from-flag":
		t.Errorf("nodeName %q", c.NodeName)
	case c.BGP.ASN != 65000:
		t.Errorf("asn %d: the file's value must stay", c.BGP.ASN)
	case len(p) != 1 || p[0].Address != "10.0.0.9" || p[0].ASN != 64999 || p[0].Port != 1179:
		t.Errorf("peers %+v", p)
	case c.HealthCheck.HoldTime.Duration != 3*time.Second || c.HealthCheck.Concurrency != 7:
		t.Errorf("healthCheck %+v", c.HealthCheck)
	case c.BGP.NodePeers == nil || c.BGP.NodePeers.LabelSelector != "edge=true":
		t.Errorf("nodePeers %+v", c.BGP.NodePeers)
	case c.Dataplane.IPTablesMode != "legacy" || c.Dataplane.Backend != "nftables" || c.Dataplane.FailureGracePeriod.Duration != 45*time.Second:
		t.Errorf("dataplane %+v", c.Dataplane)
	case c.BGP.ImportMetric != 2000:
		t.Errorf("bgp.importMetric %d", c.BGP.ImportMetric)
	}
}
