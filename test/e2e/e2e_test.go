// Package e2e is the end-to-end reliability suite: the real edgeagent binary
// in cluster mode against a real kube-apiserver, BIRD configured as Calico
// on two nodes, FRR and a client, all in network namespaces of the test bed
// (hack/testbed). Every scenario runs with clients sending requests through
// the VIPs and counts the requests that fail.
//
// Layout: the bed's fabric (10.99.0.0/24) gets one more host, the "api"
// namespace (10.99.0.50) running etcd + kube-apiserver, so the agent in the
// edge namespace reaches the apiserver over the network, and an outage can
// be made by dropping packets there (never in the root namespace, never in
// the edge namespace whose state the cleanup scenario compares). kubectl
// runs inside the api namespace, so it keeps working while the edge is cut
// off.
//
// The scenarios share one bed, one apiserver and one agent (restarted by
// the scenarios that restart it) and run in sequence; each depends on the
// state the previous one left. Needs root, bird2, FRR and the apiserver
// binaries of hack/get-apiserver.sh.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/agentproc"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/status"
)

const (
	apiIP = "10.99.0.50" // the apiserver's host on the fabric

	vipWeb  = "10.200.0.10" // reals pod1 (behind calico1) and pod2 (behind calico2)
	vipWeb2 = "10.200.0.11" // reals pod2 only
	vipLate = "10.200.0.12" // created while the apiserver is blackholed

	// The agent's apiserver health check (its defaults, written out): the
	// self-heal bound after an outage is ReadIdleTimeout + PingTimeout + 2s.
	readIdleTimeout = 10 * time.Second
	pingTimeout     = 5 * time.Second

	blackhole = 60 * time.Second
)

type suite struct {
	t      *testing.T
	bed    *testbed.Bed
	api    *apiservertest.Server
	apiNS  string // the apiserver's network namespace
	dir    string
	config string
	// backend is the config's dataplane.backend.
	backend string
	agent   *agentproc.Agent
	before  nsState
	// goodVIPs are the VIPs of the accepted routes so far.
	goodVIPs []string
	// figures for the summary at the end
	results []string
}

func (s *suite) record(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	s.t.Logf("RESULT %s", line)
	s.results = append(s.results, line)
}

func (s *suite) kubectl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.api.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// apply applies one object given as JSON-able data; it returns kubectl's
// output and error instead of failing, for the objects meant to be refused.
func (s *suite) apply(obj any) (string, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(s.dir, "obj-*.json")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.api.Kubectl(ctx, "apply", "-f", f.Name())
}

func (s *suite) mustApply(t testing.TB, obj any) {
	t.Helper()
	if out, err := s.apply(obj); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// route is an LBRoute on port 80 to the pods' HTTP port with a fast TCP
// health check (a dead real leaves within 2 s).
func (s *suite) route(ns, name, vip string, reals ...string) map[string]any {
	var rs []map[string]any
	for _, r := range reals {
		rs = append(rs, map[string]any{"ip": r})
	}
	return map[string]any{
		"apiVersion": "apv.arraynetworks.com/v1alpha1", "kind": "LBRoute",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"vsIP":        vip,
			"ports":       []map[string]any{{"port": 80, "protocol": "TCP", "targetPort": s.podPort()}},
			"realServers": rs,
			"healthCheck": map[string]any{"type": "TCP", "intervalSeconds": 1, "timeoutSeconds": 1, "riseCount": 1, "fallCount": 2},
		},
	}
}

func (s *suite) podPort() int {
	var p int
	fmt.Sscan(s.bed.Env["POD_PORT"], &p)
	return p
}

func (s *suite) writeConfig(t *testing.T) {
	peers := ""
	for _, k := range []string{"CALICO1_IP", "CALICO2_IP", "FRR_IP"} {
		peers += fmt.Sprintf("  - {address: %s}\n", s.bed.Env[k])
	}
	cfg := fmt.Sprintf(`nodeName: edge
source: {kubeconfig: %q}
vipPools:
- {cidr: 10.200.0.0/24}
- {cidr: 10.200.1.0/24, namespaces: [shop]}
bgp:
  asn: 64512
  peers:
%s  importCIDRs: [10.244.0.0/16]
apiserver: {readIdleTimeout: %s, pingTimeout: %s}
kubernetes: {namespace: edgeagent-system}
dataplane: {backend: %s}
adminAddress: "127.0.0.1:19661"
metricsAddress: "127.0.0.1:19660"
logLevel: debug
`, s.api.Kubeconfig, peers, readIdleTimeout, pingTimeout, s.backend)
	s.config = filepath.Join(s.dir, "edgeagent.yaml")
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) startAgent() {
	// Registered on the top-level test: the agent outlives each scenario.
	s.agent = agentproc.Start(s.t, s.bed, "edge", s.config)
}

func (s *suite) neighbors() map[string]string {
	rep, err := s.agent.Status()
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	m := map[string]string{}
	for _, n := range rep.Neighbors {
		m[n.Address] = n.State
	}
	return m
}

// waitEstablished waits until the agent reports every peer established and
// returns how long that took from the agent's start.
func (s *suite) waitEstablished(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	poll.Until(t, timeout, "every BGP session established", func() (bool, string) {
		m := s.neighbors()
		for _, k := range []string{"CALICO1_IP", "CALICO2_IP", "FRR_IP"} {
			if m[s.bed.Env[k]] != "established" {
				return false, fmt.Sprint(m)
			}
		}
		return true, ""
	})
	return time.Since(s.agent.Started())
}

// waitBirdEstablished waits for calico node n's session with the edge and
// returns the time since the agent's start.
func (s *suite) waitBirdEstablished(t *testing.T, n int, timeout time.Duration) time.Duration {
	t.Helper()
	poll.Until(t, timeout, fmt.Sprintf("calico%d's session with the edge established", n), func() (bool, string) {
		st := s.bed.BirdProtocolState(n, s.bed.EdgeProtocol())
		return strings.Contains(st, "Established"), st
	})
	return time.Since(s.agent.Started())
}

func (s *suite) vs(rep status.Report, vip string) (status.VirtualService, bool) {
	for _, v := range rep.VirtualServices {
		if v.VIP == vip {
			return v, true
		}
	}
	return status.VirtualService{}, false
}

// waitServing waits until the client gets an answer through vip from each
// of the given pods.
func (s *suite) waitServing(t *testing.T, vip string, pods ...string) {
	t.Helper()
	seen := map[string]bool{}
	poll.Until(t, 30*time.Second, "the client served through "+vip+" by "+strings.Join(pods, ", "), func() (bool, string) {
		out, err := s.bed.Exec("client", "curl", "-sS", "--max-time", "2", "http://"+vip+"/")
		if err == nil {
			seen[strings.TrimSpace(out)] = true
		}
		for _, p := range pods {
			if !seen[p] {
				return false, fmt.Sprintf("seen %v, last %v %q", seen, err, out)
			}
		}
		return true, ""
	})
}

func (s *suite) startLoops() loops {
	return loops{
		startLoop(s.bed, vipWeb, "pod1", "pod2"),
		startLoop(s.bed, vipWeb2, "pod2"),
	}
}

// expectNoFailures stops the loops and fails the scenario for any failed
// request; it returns the total failures for the record.
func (s *suite) expectNoFailures(t *testing.T, ls loops) int64 {
	t.Helper()
	ls.stop()
	var failed int64
	for _, l := range ls {
		t.Logf("%s", l)
		failed += l.fails.Load()
		if l.total.Load() == 0 {
			t.Errorf("no request to %s completed during the scenario", l.vip)
		}
		if l.fails.Load() > 0 {
			t.Errorf("%s", l)
		}
	}
	return failed
}

func (s *suite) requests(ls loops) int64 {
	var n int64
	for _, l := range ls {
		n += l.total.Load()
	}
	return n
}

// TestEndToEnd runs the suite once with each rules backend
// (dataplane.backend), each on a bed and apiserver of its own.
func TestEndToEnd(t *testing.T) {
	testns.RequireRoot(t)
	apiservertest.RequireBinaries(t)
	for _, backend := range []string{"iptables", "nftables"} {
		t.Run(backend, func(t *testing.T) { endToEnd(t, backend) })
	}
}

func endToEnd(t *testing.T, backend string) {
	began := time.Now()
	s := &suite{t: t, dir: t.TempDir(), backend: backend}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.bed = testbed.Up(t, testbed.Options{CalicoNodes: 2})

	// The apiserver's host, on the fabric bridge.
	api := testns.New(t, "api")
	s.apiNS = api.Name
	fabric := s.bed.NS("fabric")
	api.MustRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "v-"+api.Name[len(api.Name)-6:], "netns", fabric)
	port := "v-" + api.Name[len(api.Name)-6:]
	if out, err := s.bed.Exec("fabric", "ip", "link", "set", port, "master", "br0", "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	api.MustRun("ip", "addr", "add", apiIP+"/24", "dev", "eth0")
	api.MustRun("ip", "link", "set", "eth0", "up")
	s.before = captureEdge(t, s.bed) // before the agent ever ran
	s.api = apiservertest.Start(t, apiservertest.Options{Netns: api.Name, Address: apiIP})
	s.kubectl(t, "create", "namespace", "shop")
	s.kubectl(t, "create", "namespace", "bad")
	s.kubectl(t, "create", "namespace", "edgeagent-system")
	t.Logf("test bed and apiserver up in %s", time.Since(began).Round(time.Millisecond))

	s.writeConfig(t)
	s.mustApply(t, s.route("shop", "web", vipWeb, s.bed.Env["POD1_IP"], s.bed.Env["POD2_IP"]))
	s.mustApply(t, s.route("shop", "web2", vipWeb2, s.bed.Env["POD2_IP"]))
	s.goodVIPs = []string{vipWeb, vipWeb2}
	s.startAgent()
	took := s.waitEstablished(t, 30*time.Second)
	s.record("first start: every session established %s after the process started", took.Round(time.Millisecond))
	s.waitServing(t, vipWeb, "pod1", "pod2")
	s.waitServing(t, vipWeb2, "pod2")
	if rep, err := s.agent.Status(); err != nil || rep.Dataplane == nil || rep.Dataplane.Backend != s.backend {
		t.Fatalf("/status dataplane: %+v, %v; want backend %s", rep.Dataplane, err, s.backend)
	}
	for _, n := range []int{1, 2} {
		poll.Until(t, 10*time.Second, fmt.Sprintf("calico%d to have both VIPs", n), func() (bool, string) {
			o1, ok1 := s.bed.BirdRoute(n, vipWeb+"/32")
			o2, ok2 := s.bed.BirdRoute(n, vipWeb2+"/32")
			return ok1 && ok2, o1 + o2
		})
	}

	for _, sc := range []struct {
		name string
		run  func(*suite, *testing.T)
	}{
		{"kill-9", (*suite).kill9},
		{"rolling-restart", (*suite).rollingRestart},
		{"apiserver-blackhole", (*suite).apiserverBlackhole},
		{"bird-restart", (*suite).birdRestart},
		{"malformed-lbroutes", (*suite).malformed},
		{"cleanup", (*suite).cleanup},
	} {
		if !t.Run(sc.name, func(t *testing.T) { sc.run(s, t) }) {
			break // each scenario starts from the state the previous one left
		}
	}
	t.Logf("suite (backend %s) took %s; figures:\n  %s", s.backend, time.Since(began).Round(time.Second), strings.Join(s.results, "\n  "))
}
