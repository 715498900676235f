package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/arraynetworks/edgeagent/internal/testreq"
)

// This file runs the monitoring side: Debian's prometheus and
// prometheus-alertmanager as processes on loopback of the test's own
// network namespace, webhook receivers in the test process, and relays
// that carry TCP across the boundary of the bed's edge namespace through
// Unix sockets (a path on the file system is reachable from every network
// namespace), so no interface is added to the root namespace and the test
// process never enters a namespace.

// ruleFile turns the PrometheusRule manifest into a plain Prometheus rule
// file: its spec, with the `for` of every rule not named in keep replaced
// by forDur, so an alert that waits minutes in production fires within
// seconds here. Expressions and thresholds are left alone: what is tested
// is the shipped rule.
func ruleFile(manifest []byte, forDur time.Duration, keep ...string) ([]byte, error) {
	var pr struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []map[string]any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(manifest, &pr); err != nil {
		return nil, fmt.Errorf("parse PrometheusRule: %w", err)
	}
	if pr.Kind != "PrometheusRule" || len(pr.Spec.Groups) == 0 {
		return nil, fmt.Errorf("not a PrometheusRule with groups (kind %q)", pr.Kind)
	}
	for _, g := range pr.Spec.Groups {
		rules, _ := g["rules"].([]any)
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			if _, ok := rule["for"]; ok && !slices.Contains(keep, fmt.Sprint(rule["alert"])) {
				rule["for"] = forDur.String()
			}
		}
	}
	return yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// relay accepts on (lnet, laddr) and connects each connection to (dnet,
// daddr), copying both ways, until the test ends.
func relay(t *testing.T, lnet, laddr, dnet, daddr string) net.Listener {
	t.Helper()
	l, err := net.Listen(lnet, laddr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				d, err := net.DialTimeout(dnet, daddr, 5*time.Second)
				if err != nil {
					return
				}
				defer d.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(d, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, d); done <- struct{}{} }()
				<-done
			})
		}
	})
	return l
}

// proc is a daemon the test started; it is killed when the test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, dir, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			if len(data) > 6000 {
				data = data[len(data)-6000:]
			}
			t.Logf("--- %s log (tail)\n%s", name, data)
		}
	})
	return p
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitReady polls url until it answers 200; it fails when the process
// exits first (a port taken meanwhile, say) or the time is up.
func (p *proc) waitReady(u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !p.alive() {
			return fmt.Errorf("%s exited before it was ready (log %s)", p.name, p.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s within %s: %v", p.name, u, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startOnFreePort starts a daemon on a free loopback port and waits until
// it is ready. The port is free when picked but another process may take
// it before the daemon binds it: then it tries again on another.
func startOnFreePort(t *testing.T, dir, name string, cmd func(addr string) *exec.Cmd, ready string, timeout time.Duration) (*proc, string) {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := start(t, dir, fmt.Sprintf("%s-%d", name, attempt), cmd(addr))
		if err = p.waitReady("http://"+addr+ready, timeout); err == nil {
			return p, addr
		}
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Logf("%v; retrying", err)
	}
	t.Fatal(err)
	return nil, ""
}

// notification is one alert of one webhook call, as the receiver got it.
type notification struct {
	Receiver string // the path the webhook posted to: tls, slb, default
	Status   string // firing or resolved
	Labels   map[string]string
	At       time.Time // when the webhook call arrived
}

// receivers are the Alertmanager webhook receivers: one HTTP server, one
// path per receiver, recording every alert of every call.
type receivers struct {
	URL string

	mu  sync.Mutex
	got []notification
}

func startReceivers(t *testing.T) *receivers {
	t.Helper()
	r := &receivers{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var msg struct {
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		at := time.Now()
		if err := json.NewDecoder(req.Body).Decode(&msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, a := range msg.Alerts {
			r.got = append(r.got, notification{Receiver: strings.Trim(req.URL.Path, "/"), Status: a.Status, Labels: a.Labels, At: at})
		}
		r.mu.Unlock()
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.URL = "http://" + l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// since returns the notifications that arrived at or after t0.
func (r *receivers) since(t0 time.Time) []notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []notification
	for _, n := range r.got {
		if !n.At.Before(t0) {
			out = append(out, n)
		}
	}
	return out
}

// stack is Prometheus scraping the agent and evaluating the rules, and
// Alertmanager routing team: tls and team: slb to their receivers.
type stack struct {
	prom, am  *proc
	promURL   string
	receivers *receivers
}

// startStack starts Alertmanager, then Prometheus scraping target (the
// agent's metrics, through a relay) as job "edgeagent", the job the rules
// select, with rules loaded from rulesPath.
func startStack(t *testing.T, dir, target, rulesPath string) *stack {
	t.Helper()
	for _, bin := range []string{"prometheus", "prometheus-alertmanager"} {
		if _, err := exec.LookPath(bin); err != nil {
			testreq.Missing(t, "%s not found: run hack/install-monitoring.sh (Debian's prometheus and prometheus-alertmanager)", bin)
		}
	}
	s := &stack{receivers: startReceivers(t)}

	// Routing as the mission has it: TLS findings to the TLS team, SLB
	// findings (and the agent's own alerts) to the SLB team. Anything
	// without a team lands in "default", which must stay empty. One
	// notification per alert (group_by: ['...']), sent at once.
	amCfg := fmt.Sprintf(`route:
  receiver: default
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
  - {receiver: tls, matchers: ['team="tls"']}
  - {receiver: slb, matchers: ['team="slb"']}
receivers:
- {name: default, webhook_configs: [{url: %[1]q, send_resolved: true}]}
- {name: tls, webhook_configs: [{url: %[2]q, send_resolved: true}]}
- {name: slb, webhook_configs: [{url: %[3]q, send_resolved: true}]}
`, s.receivers.URL+"/default", s.receivers.URL+"/tls", s.receivers.URL+"/slb")
	amFile := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(amFile, []byte(amCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var amAddr string
	s.am, amAddr = startOnFreePort(t, dir, "alertmanager", func(addr string) *exec.Cmd {
		return exec.Command("prometheus-alertmanager",
			"--config.file="+amFile, "--storage.path="+filepath.Join(dir, "am-data"),
			"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	}, "/-/ready", 30*time.Second)

	promCfg := fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
rule_files: [%q]
alerting:
  alertmanagers:
  - static_configs: [{targets: [%q]}]
scrape_configs:
- job_name: edgeagent
  static_configs:
  - targets: [%q]
    labels: {node: edge}
`, rulesPath, amAddr, target)
	promFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promFile, []byte(promCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var promAddr string
	s.prom, promAddr = startOnFreePort(t, dir, "prometheus", func(addr string) *exec.Cmd {
		return exec.Command("prometheus",
			"--config.file="+promFile, "--storage.tsdb.path="+filepath.Join(dir, "prom-data"),
			"--web.listen-address="+addr,
			// Resend firing alerts every second (Prometheus' default is
			// 1m), so Alertmanager never times one out between evaluations.
			"--rules.alert.resend-delay=1s", "--log.level=warn")
	}, "/-/ready", 60*time.Second)
	s.promURL = "http://" + promAddr
	return s
}

// promResult is one series of an instant query.
type promResult struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant PromQL query; a parse error comes back as an error
// that quotes Prometheus.
func (s *stack) query(ctx context.Context, q string) ([]promResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.promURL+"/api/v1/query",
		strings.NewReader(url.Values{"query": {q}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("query %q: HTTP %d: %s", q, resp.StatusCode, bytes.TrimSpace(body))
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", q, out.ErrorType, out.Error)
	}
	switch out.Data.ResultType {
	case "vector":
		var rs []promResult
		err := json.Unmarshal(out.Data.Result, &rs)
		return rs, err
	case "scalar":
		return []promResult{{}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %s", q, out.Data.ResultType)
	}
}

// activeAlerts lists Prometheus' pending and firing alerts.
func (s *stack) activeAlerts(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.promURL+"/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	var names []string
	for _, a := range out.Data.Alerts {
		names = append(names, fmt.Sprintf("%s(%s)%v", a.Labels["alertname"], a.State, a.Labels))
	}
	return names, nil
}
