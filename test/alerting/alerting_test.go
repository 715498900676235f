// Package alerting proves the monitoring path with the real components: the
// edgeagent binary in cluster mode (a real kube-apiserver) in the BGP test
// bed (hack/testbed: BIRD configured as Calico on two nodes, a pod behind
// each) driving the APV emulator, a real Prometheus (Debian's package)
// scraping it and evaluating the project's own rules (the PrometheusRule's
// spec, with the `for` durations shortened), and a real Alertmanager
// routing team: tls and team: slb to two webhook receivers the test runs.
//
// Scenarios, each timed from the fault to the notification at the
// receiver:
//   - a BIRD peer stops: EdgeAgentBGPSessionDown reaches the SLB receiver;
//   - the APV's certificate is about to expire: the certificate alerts
//     reach the TLS receiver and nothing reaches the SLB one;
//   - an APV real server is down: APVRealServiceDown reaches the SLB
//     receiver and nothing reaches the TLS one;
//   - each fault healed: the alerts resolve at the same receiver.
//
// Before the scenarios, every query of the shipped Grafana dashboard runs
// against this Prometheus: it must parse and return series.
//
// Environment: EDGEAGENT_ALERT_FOR (default 2s) is the `for` every rule
// gets here; EDGEAGENT_ALERTING_RESULTS names a file to append the
// measured times to (hack/bench/alerting.sh uses it).
package alerting

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/apv/apvemu"
	"github.com/arraynetworks/edgeagent/internal/agentproc"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/dashboard"
	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/internal/testreq"
)

const (
	apiIP  = "10.99.0.50" // the apiserver's host on the bed's fabric
	vipWeb = "10.200.0.10"
	vsName = "shop-web" // the LBRoute's default vsName: <namespace>-<name>
	vhost  = "shop_tls"

	// Inside the edge namespace: the agent's endpoints and the APV as the
	// agent sees it (a relay to the emulator in the test process).
	metricsAddr = "127.0.0.1:19560"
	adminAddr   = "127.0.0.1:19561"
	apvAddr     = "127.0.0.1:19997"

	// How long any one wait may take. Generous: the machine is shared and
	// two cores are all there is; the figures recorded are the real ones.
	patience = 90 * time.Second
)

type suite struct {
	t       *testing.T
	dir     string
	bed     *testbed.Bed
	api     *apiservertest.Server
	emu     *apvemu.Emulator
	agent   *agentproc.Agent
	stack   *stack
	results []string
	socats  int
}

func (s *suite) record(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	s.t.Logf("RESULT %s", line)
	s.results = append(s.results, line)
}

func (s *suite) kubectl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := s.api.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func forDuration(t *testing.T) time.Duration {
	d := 2 * time.Second
	if v := os.Getenv("EDGEAGENT_ALERT_FOR"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("EDGEAGENT_ALERT_FOR: %v", err)
		}
	}
	return d
}

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		testreq.Missing(t, "%s not found: run hack/install-deps.sh", name)
	}
}

func TestAlertingEndToEnd(t *testing.T) {
	testns.RequireRoot(t)
	apiservertest.RequireBinaries(t)
	requireTool(t, "socat")
	began := time.Now()
	s := &suite{t: t, dir: t.TempDir()}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.bed = testbed.Up(t, testbed.Options{CalicoNodes: 2, WithoutFRR: true})
	s.startAPIServer(t)
	s.startAPV(t)
	s.startAgent(t)
	t.Logf("bed, apiserver, APV emulator and agent up in %s", time.Since(began).Round(time.Millisecond))

	rules, err := os.ReadFile(filepath.Join(apiservertest.RepoRoot(), "deploy", "daemonset", "monitoring", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The up-based rules keep their production `for`: a scrape slowed by a
	// busy machine must not page anyone here either (and no scenario is
	// about them).
	file, err := ruleFile(rules, forDuration(t), "EdgeAgentDown", "EdgeAgentNotScraped")
	if err != nil {
		t.Fatal(err)
	}
	rulesPath := filepath.Join(s.dir, "edgeagent.rules.yaml")
	if err := os.WriteFile(rulesPath, file, 0o644); err != nil {
		t.Fatal(err)
	}
	target := s.metricsRelay(t)
	s.stack = startStack(t, s.dir, target, rulesPath)
	s.waitSteady(t)
	t.Logf("monitoring steady %s after the start", time.Since(began).Round(time.Millisecond))

	quietSince := time.Now()
	for _, sc := range []struct {
		name string
		run  func(*suite, *testing.T)
	}{
		{"dashboard-queries", (*suite).dashboardQueries},
		{"bgp-peer-down", (*suite).bgpPeerDown},
		{"certificate-expiring", (*suite).certificateExpiring},
		{"apv-real-down", (*suite).apvRealDown},
	} {
		if !t.Run(sc.name, func(t *testing.T) { sc.run(s, t) }) {
			break // each scenario starts from the healed state of the one before
		}
	}
	for _, n := range s.stack.receivers.since(quietSince) {
		if n.Receiver == "default" {
			t.Errorf("alert without a team reached the default receiver: %v %s", n.Labels, n.Status)
		}
	}
	t.Logf("suite took %s; figures:\n  %s", time.Since(began).Round(time.Second), strings.Join(s.results, "\n  "))
	if f := os.Getenv("EDGEAGENT_ALERTING_RESULTS"); f != "" && !t.Failed() {
		out, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(out, "%s\n", strings.Join(s.results, "\n"))
			out.Close()
		}
	}
}

// startAPIServer puts a host for the apiserver on the bed's fabric (as
// test/e2e does) and starts etcd + kube-apiserver there.
func (s *suite) startAPIServer(t *testing.T) {
	api := testns.New(t, "api")
	fabric := s.bed.NS("fabric")
	port := "v-" + api.Name[len(api.Name)-6:]
	api.MustRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", fabric)
	if out, err := s.bed.Exec("fabric", "ip", "link", "set", port, "master", "br0", "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	api.MustRun("ip", "addr", "add", apiIP+"/24", "dev", "eth0")
	api.MustRun("ip", "link", "set", "eth0", "up")
	s.api = apiservertest.Start(t, apiservertest.Options{Netns: api.Name, Address: apiIP})
	s.kubectl(t, "create", "namespace", "shop")
	s.kubectl(t, "create", "namespace", "edgeagent-system")
}

// startAPV starts the emulator in the test process, with a certificate
// far from expiry, and makes it reachable from the edge namespace at
// apvAddr: socat there listens and connects to a Unix socket, which the
// test relays to the emulator's loopback port.
func (s *suite) startAPV(t *testing.T) {
	s.emu = apvemu.New(t, "admin", "pw")
	s.emu.SetCert(vhost, vsName, time.Now().Add(1000*24*time.Hour))
	sock := filepath.Join(s.dir, "apv.sock")
	relay(t, "unix", sock, "tcp", strings.TrimPrefix(s.emu.URL(), "https://"))
	s.socat(t, "TCP-LISTEN:"+portOf(apvAddr)+",bind=127.0.0.1,fork,reuseaddr", "UNIX-CONNECT:"+sock)
}

// metricsRelay makes the agent's metrics port in the edge namespace
// reachable on loopback here and returns that address.
func (s *suite) metricsRelay(t *testing.T) string {
	sock := filepath.Join(s.dir, "metrics.sock")
	s.socat(t, "UNIX-LISTEN:"+sock+",fork,reuseaddr,unlink-early", "TCP:"+metricsAddr)
	poll.Until(t, 10*time.Second, "socat to listen on "+sock, func() (bool, string) {
		_, err := os.Stat(sock)
		return err == nil, fmt.Sprint(err)
	})
	return relay(t, "tcp", "127.0.0.1:0", "unix", sock).Addr().String()
}

func portOf(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// socat runs socat in the edge namespace until the test ends.
func (s *suite) socat(t *testing.T, from, to string) {
	cmd := s.bed.Command("edge", "socat", from, to)
	s.socats++
	start(t, s.dir, fmt.Sprintf("socat-%d", s.socats), cmd)
}

func (s *suite) startAgent(t *testing.T) {
	ca, err := s.emu.WriteCA(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"apv-user": "admin\n", "apv-pass": "pw\n"} {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`nodeName: edge
source: {kubeconfig: %q}
vipPools: [{cidr: 10.200.0.0/24}]
bgp:
  asn: 64512
  peers:
  - {address: %s}
  - {address: %s}
  importCIDRs: [10.244.0.0/16]
kubernetes: {namespace: edgeagent-system}
apv:
  devices:
  - {name: apv-a, url: "https://%s", usernameFile: apv-user, passwordFile: apv-pass, caFile: %s}
  syncInterval: 1s
  scanInterval: 1s
adminAddress: %q
metricsAddress: %q
`, s.api.Kubeconfig, s.bed.Env["CALICO1_IP"], s.bed.Env["CALICO2_IP"], apvAddr, filepath.Base(ca), adminAddr, metricsAddr)
	path := filepath.Join(s.dir, "edgeagent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	route := filepath.Join(s.dir, "web.yaml")
	if err := os.WriteFile(route, []byte(fmt.Sprintf(`apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: web, namespace: shop}
spec:
  vsIP: %s
  ports: [{port: 80, protocol: TCP, targetPort: %s}]
  realServers: [{ip: %s}, {ip: %s}]
  healthCheck: {type: TCP, intervalSeconds: 1, timeoutSeconds: 1, riseCount: 1, fallCount: 2}
`, vipWeb, s.bed.Env["POD_PORT"], s.bed.Env["POD1_IP"], s.bed.Env["POD2_IP"])), 0o644); err != nil {
		t.Fatal(err)
	}
	s.kubectl(t, "apply", "-f", route)
	s.agent = agentproc.Start(s.t, s.bed, "edge", path)
	poll.Until(t, patience, "both BGP sessions established and the VIP advertised", func() (bool, string) {
		rep, err := s.agent.Status()
		if err != nil {
			return false, err.Error()
		}
		up := 0
		for _, n := range rep.Neighbors {
			if n.State == "established" {
				up++
			}
		}
		adv := false
		for _, v := range rep.VirtualServices {
			adv = adv || (v.VIP == vipWeb && v.Advertised)
		}
		return up == 2 && adv, fmt.Sprintf("%+v %+v", rep.Neighbors, rep.VirtualServices)
	})
	poll.Until(t, patience, "the APV to carry the virtual service", func() (bool, string) {
		run := strings.Join(s.emu.Running(), "\n")
		return strings.Contains(run, vsName), run
	})
}

// waitSteady waits until Prometheus has every series the scenarios and the
// dashboard need, and no alert has been pending or firing for a while, so
// a scenario's notifications are its own.
func (s *suite) waitSteady(t *testing.T) {
	ctx := context.Background()
	for _, q := range []string{
		`up{job="edgeagent"} == 1`,
		`edgeagent_bgp_session_up == 1`,
		`edgeagent_apv_ssl_certificate_expiry_timestamp_seconds`,
		`edgeagent_apv_slb_real_up == 1`,
		`edgeagent_healthcheck_duration_seconds_count`,
		`edgeagent_status_writes_total`,
	} {
		poll.Until(t, patience, "Prometheus to have "+q, func() (bool, string) {
			rs, err := s.stack.query(ctx, q)
			return err == nil && len(rs) > 0, fmt.Sprint(err)
		})
	}
	quiet := time.Time{}
	poll.Until(t, patience, "no pending or firing alert for 5s", func() (bool, string) {
		as, err := s.stack.activeAlerts(ctx)
		if err != nil || len(as) > 0 {
			quiet = time.Time{}
			return false, fmt.Sprint(as, err)
		}
		if quiet.IsZero() {
			quiet = time.Now()
		}
		return time.Since(quiet) >= 5*time.Second, ""
	})
}

// dashboardQueries runs every panel query of the shipped dashboard: each
// must parse and return at least one series while the bed is up.
func (s *suite) dashboardQueries(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(apiservertest.RepoRoot(), "deploy", "daemonset", "monitoring", "dashboards", "edgeagent.json"))
	if err != nil {
		t.Fatal(err)
	}
	qs, err := dashboard.Queries(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	checked := 0
	for _, q := range qs {
		expr := dashboard.Expand(q.Expr, "30s")
		// One subtest per panel: a dead panel fails alone and the others
		// are still checked.
		t.Run(q.Panel, func(t *testing.T) {
			// A rate needs two samples in its window, a histogram one
			// observation: a few seconds at most after waitSteady.
			poll.Every(500*time.Millisecond).Until(t, 30*time.Second, fmt.Sprintf("panel %q to return a series for %s (a dead panel)", q.Panel, expr), func() (bool, string) {
				rs, err := s.stack.query(ctx, expr)
				if err != nil {
					t.Fatalf("panel %q: query does not run: %v", q.Panel, err)
				}
				return len(rs) > 0, "no series"
			})
			checked++
		})
	}
	s.record("dashboard: %d of %d panel queries parse and return series", checked, len(qs))
}

// scenario injects a fault, waits for every expected alert at want (and
// times the first), checks that no other receiver heard from the alerts
// (or from anything else), heals, and waits for every alert to resolve at
// want.
func (s *suite) scenario(t *testing.T, name, want string, expect map[string]map[string]string, fault, heal func()) {
	ctx := context.Background()
	t0 := time.Now()
	fault()
	arrived := map[string]time.Time{}
	poll.Until(t, patience, fmt.Sprintf("%v firing at the %s receiver", keys(expect), want), func() (bool, string) {
		for _, n := range s.stack.receivers.since(t0) {
			if n.Receiver == want && n.Status == "firing" && matches(n.Labels, expect) != "" {
				if _, seen := arrived[matches(n.Labels, expect)]; !seen {
					arrived[matches(n.Labels, expect)] = n.At
				}
			}
		}
		as, _ := s.stack.activeAlerts(ctx)
		return len(arrived) == len(expect), fmt.Sprintf("arrived %v; Prometheus: %v", keys(arrived), as)
	})
	for _, a := range keys(expect) {
		s.record("%s: fault → %s delivered to %s in %s", name, a, want, arrived[a].Sub(t0).Round(10*time.Millisecond))
	}

	t1 := time.Now()
	heal()
	resolved := map[string]time.Time{}
	poll.Until(t, patience, fmt.Sprintf("%v resolved at the %s receiver", keys(expect), want), func() (bool, string) {
		for _, n := range s.stack.receivers.since(t1) {
			if a := matches(n.Labels, expect); n.Receiver == want && n.Status == "resolved" && a != "" {
				if _, seen := resolved[a]; !seen {
					resolved[a] = n.At
				}
			}
		}
		as, _ := s.stack.activeAlerts(ctx)
		return len(resolved) == len(expect), fmt.Sprintf("resolved %v; Prometheus: %v", keys(resolved), as)
	})
	last := time.Time{}
	for _, at := range resolved {
		if at.After(last) {
			last = at
		}
	}
	s.record("%s: heal → every alert resolved at %s in %s", name, want, last.Sub(t1).Round(10*time.Millisecond))

	// Let late notifications of this scenario arrive, then check where
	// everything of the scenario went.
	s.waitQuiet(t)
	for _, n := range s.stack.receivers.since(t0) {
		if n.Receiver != want {
			t.Errorf("%s reached the %s receiver (%s): %v", n.Labels["alertname"], n.Receiver, n.Status, n.Labels)
		}
	}
}

// waitQuiet waits until Prometheus has no pending or firing alert, and a
// few Alertmanager intervals more.
func (s *suite) waitQuiet(t *testing.T) {
	ctx := context.Background()
	poll.Until(t, patience, "no active alerts", func() (bool, string) {
		as, err := s.stack.activeAlerts(ctx)
		return err == nil && len(as) == 0, fmt.Sprint(as, err)
	})
	time.Sleep(3 * time.Second)
}

// matches returns the name of the expected alert whose labels labels
// carries ("" when none).
func matches(labels map[string]string, expect map[string]map[string]string) string {
	for name, want := range expect {
		if labels["alertname"] != name {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && labels[k] == v
		}
		if ok {
			return name
		}
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// bgpPeerDown stops BIRD on calico2: its session drops, the alert goes to
// the SLB team (the agent's own alerts carry team: slb).
func (s *suite) bgpPeerDown(t *testing.T) {
	peer := s.bed.Env["CALICO2_IP"]
	s.scenario(t, "bgp-peer-down", "slb",
		map[string]map[string]string{"EdgeAgentBGPSessionDown": {"peer": peer, "team": "slb", "severity": "warning"}},
		func() { s.bed.StopBird(2, false) },
		func() {
			s.bed.StartBird()
			poll.Until(t, patience, "calico2's session re-established", func() (bool, string) {
				n := s.agent.Neighbor(peer)
				return n.State == "established", fmt.Sprintf("%+v", n)
			})
		})
}

// certificateExpiring makes the APV's certificate expire in 10 days: both
// certificate alerts (< 30 d, < 14 d) go to the TLS team only; renewing
// it resolves them.
func (s *suite) certificateExpiring(t *testing.T) {
	s.scenario(t, "certificate-expiring", "tls",
		map[string]map[string]string{
			"APVCertificateExpiresSoon":     {"device": "apv-a", "vhost": vhost, "team": "tls"},
			"APVCertificateExpiresVerySoon": {"device": "apv-a", "vhost": vhost, "team": "tls"},
		},
		func() { s.emu.SetCert(vhost, vsName, time.Now().Add(10*24*time.Hour)) },
		func() { s.emu.SetCert(vhost, vsName, time.Now().Add(1000*24*time.Hour)) })
}

// apvRealDown makes the APV's own health check fail one real of the
// virtual service (the other stays up, so the virtual service does too):
// the real-down alert goes to the SLB team only.
func (s *suite) apvRealDown(t *testing.T) {
	rs, err := s.stack.query(context.Background(), `edgeagent_apv_slb_real_up{device="apv-a"} == 1`)
	if err != nil || len(rs) < 2 {
		t.Fatalf("want two APV reals up, got %v (%v)", rs, err)
	}
	var names []string
	for _, r := range rs {
		names = append(names, r.Metric["real"])
	}
	slices.Sort(names)
	real := names[0]
	s.scenario(t, "apv-real-down", "slb",
		map[string]map[string]string{"APVRealServiceDown": {"device": "apv-a", "real": real, "team": "slb"}},
		func() { s.emu.SetRealHealth(real, false) },
		func() { s.emu.SetRealHealth(real, true) })
}
