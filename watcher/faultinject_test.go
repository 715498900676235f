package watcher

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"k8s.io/client-go/tools/clientcmd"
)

// The kubelet incident: a load balancer between agent and apiserver drops
// the agent's established connection silently (no RST) while new
// connections work. Reproduced inside a throwaway network namespace that
// holds etcd, the apiserver and the agent (this test binary re-run as a
// helper process): iptables DROP on the agent's source port, both
// directions, in INPUT (dropping in OUTPUT would hand the sender an error,
// not silence). Then an LBRoute changes; the test measures how long the
// agent takes to see it.
//
// The figures in docs/benchmarks/kube.md come from this test with
// EDGEAGENT_FAULT_RIT=10s EDGEAGENT_FAULT_PT=5s (the defaults) and
// EDGEAGENT_FAULT_RIT=0; by default it runs with 2s/1s to stay quick.
func TestApiserverSilentDrop(t *testing.T) {
	testns.RequireRoot(t)
	apiservertest.RequireBinaries(t)
	rit := envDur("EDGEAGENT_FAULT_RIT", 2*time.Second)
	pt := envDur("EDGEAGENT_FAULT_PT", time.Second)
	t.Run(fmt.Sprintf("ping-%v-%v", rit, pt), func(t *testing.T) {
		got, ok := silentDrop(t, rit, pt, rit+pt+15*time.Second)
		if !ok {
			t.Fatalf("agent did not see the change within %v of a silent connection drop (ReadIdleTimeout %v, PingTimeout %v)", rit+pt+15*time.Second, rit, pt)
		}
		t.Logf("RESULT readIdleTimeout=%v pingTimeout=%v: change seen %.2fs after the drop (target <= %v)", rit, pt, got.Seconds(), rit+pt+2*time.Second)
	})
	t.Run("no-health-check", func(t *testing.T) {
		bound := envDur("EDGEAGENT_FAULT_OFF_BOUND", 15*time.Second)
		got, ok := silentDrop(t, 0, pt, bound)
		if ok {
			t.Fatalf("without the HTTP/2 health check the agent still saw the change after %v: the drop was not silent", got)
		}
		t.Logf("RESULT readIdleTimeout=0: change not seen within %v (the connection stays dead until TCP gives up)", bound)
	})
}

func envDur(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// helperRecord is one line of the helper agent's output.
type helperRecord struct {
	At         int64             `json:"at"`
	Routes     map[string]string `json:"routes"`
	Reconnects int64             `json:"reconnects"`
	Stale      bool              `json:"stale"`
}

// silentDrop runs the scenario once and returns the time from the change to
// the agent acting on it, or false when it did not within bound.
func silentDrop(t *testing.T, rit, pt, bound time.Duration) (time.Duration, bool) {
	ns := testns.New(t, "kf")
	s := apiservertest.Start(t, apiservertest.Options{Netns: ns.Name})
	ctx, cancel := context.WithTimeout(context.Background(), bound+2*time.Minute)
	defer cancel()
	kubectl := func(args ...string) {
		t.Helper()
		if _, err := s.Kubectl(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	kubectl("create", "namespace", "shop")
	route := `{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"web","namespace":"shop"},
"spec":{"vsIP":"10.200.0.10","ports":[{"port":80}],"realServers":[{"ip":"10.244.1.10"}]}}`
	f := t.TempDir() + "/route.json"
	if err := os.WriteFile(f, []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl("apply", "-f", f)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Cmd(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "EDGEAGENT_FAULT_HELPER=1", "KUBECONFIG="+s.Kubeconfig,
		"EDGEAGENT_FAULT_RIT="+rit.String(), "EDGEAGENT_FAULT_PT="+pt.String())
	cmd.Stderr = &prefixWriter{t: t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	recs := make(chan helperRecord, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r helperRecord
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				recs <- r
			}
		}
		close(recs)
	}()
	waitFor := func(d time.Duration, pred func(helperRecord) bool) (helperRecord, bool) {
		timer := time.NewTimer(d)
		defer timer.Stop()
		for {
			select {
			case r, ok := <-recs:
				if !ok {
					t.Fatal("helper agent exited")
				}
				if r.Routes["shop/web"] == "" {
					t.Errorf("the agent lost route shop/web from its snapshot: %+v", r)
				}
				if pred(r) {
					return r, true
				}
			case <-timer.C:
				return helperRecord{}, false
			}
		}
	}
	if _, ok := waitFor(30*time.Second, func(r helperRecord) bool { return r.Routes["shop/web"] == "10.200.0.10" }); !ok {
		t.Fatal("helper agent never saw the route")
	}

	// Let the watch go quiet, then cut the agent's connection(s) silently.
	time.Sleep(500 * time.Millisecond)
	ports := agentPorts(t, ns, cmd.Process.Pid, s.Port)
	for _, p := range ports {
		ns.MustRun("iptables", "-I", "INPUT", "-p", "tcp", "--sport", p, "-j", "DROP")
		ns.MustRun("iptables", "-I", "INPUT", "-p", "tcp", "--dport", p, "-j", "DROP")
	}
	start := time.Now()
	kubectl("patch", "-n", "shop", "lbroute", "web", "--type=merge", "-p", `{"spec":{"vsIP":"10.200.0.11"}}`)
	r, ok := waitFor(bound, func(r helperRecord) bool { return r.Routes["shop/web"] == "10.200.0.11" })
	if !ok {
		return 0, false
	}
	if r.Reconnects < 1 {
		t.Errorf("change seen without a reconnect (%+v): the drop did not hit the agent's connection", r)
	}
	return time.Unix(0, r.At).Sub(start), true
}

var ssPort = regexp.MustCompile(`127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)\s+users:.*pid=(\d+),`)

// agentPorts finds the local ports of the agent's established connections
// to the apiserver.
func agentPorts(t *testing.T, ns *testns.NS, pid, apiPort int) []string {
	t.Helper()
	out := ns.MustRun("ss", "-tnpH", "state", "established")
	var ports []string
	for _, line := range strings.Split(out, "\n") {
		m := ssPort.FindStringSubmatch(line)
		if m == nil || m[2] != strconv.Itoa(apiPort) || m[3] != strconv.Itoa(pid) {
			continue
		}
		ports = append(ports, m[1])
	}
	if len(ports) == 0 {
		t.Fatalf("no connection of pid %d to port %d in:\n%s", pid, apiPort, out)
	}
	return ports
}

type prefixWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if testing.Verbose() {
		w.t.Logf("agent: %s", strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// faultHelperMain is the agent side of TestApiserverSilentDrop: a
// Kubernetes source on a health-checked transport, printing its view of the
// routes as JSON lines whenever it changes.
func faultHelperMain() int {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mon := healthcheck.NewAPIServerMonitor(nil, healthcheck.APIServerOptions{
		ReadIdleTimeout: envDur("EDGEAGENT_FAULT_RIT", 10*time.Second),
		PingTimeout:     envDur("EDGEAGENT_FAULT_PT", 5*time.Second),
	})
	cfg, err = mon.Configure(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k, err := NewKube(KubeOptions{Config: cfg, NodeName: "edge", Observer: mon})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	kick := make(chan struct{}, 1)
	go func() {
		enc := json.NewEncoder(os.Stdout)
		var last string
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			if !k.Synced() {
				continue
			}
			routes := map[string]string{}
			for _, rt := range k.Snapshot().Routes {
				routes[rt.Namespace+"/"+rt.Name] = rt.Spec.VSIP
			}
			b, _ := json.Marshal(routes)
			if string(b) == last {
				continue
			}
			last = string(b)
			_ = enc.Encode(helperRecord{At: time.Now().UnixNano(), Routes: routes, Reconnects: mon.Reconnects(), Stale: mon.Stale()})
		}
	}()
	go func() {
		// Run calls changed once synced; this covers a sync with no events after.
		for !k.Synced() && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		select {
		case kick <- struct{}{}:
		default:
		}
	}()
	if err := k.Run(ctx, func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
