// Package healthe2e runs the real edgeagent binary in the edge namespace of
// the BGP test bed (hack/testbed: Calico-style BIRD nodes with pods, a
// client routing the VIP range via the edge) and checks the health-check
// acceptance tests end to end: a dead pod leaves the kernel's chains and the
// client stops seeing errors, a VIP with no healthy real leaves BIRD and
// comes back, and a flapping pod does not flap the route more than once per
// hold time.
package healthe2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/agentproc"
	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/status"
)

// Check timing used by the LBRoutes below: a dead real is out within
// fall × interval + timeout = 3 s.
const (
	interval = time.Second
	timeout  = time.Second
	rise     = 2
	fall     = 2
	holdTime = 4 * time.Second
	podPort  = 18080 // the test's own servers; the bed's own run on 8080
)

// env is one bed with an agent in its edge namespace.
type env struct {
	t      *testing.T
	bed    *testbed.Bed
	dir    string
	config string
	agent  *agentproc.Agent
}

func setup(t *testing.T) *env {
	t.Helper()
	bed := testbed.Up(t, testbed.Options{CalicoNodes: 2, WithoutFRR: true})
	e := &env{t: t, bed: bed, dir: t.TempDir()}
	if err := os.Mkdir(filepath.Join(e.dir, "routes"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.config = filepath.Join(e.dir, "edgeagent.yaml")
	cfg := fmt.Sprintf(`nodeName: edge
source: {dir: routes}
vipPools: [{cidr: 10.200.0.0/16}]
bgp:
  asn: 64512
  peers:
  - {address: %s}
  - {address: %s}
  importCIDRs: [10.244.0.0/16]
healthCheck: {holdTime: %s}
adminAddress: "127.0.0.1:19561"
metricsAddress: "127.0.0.1:19560"
logLevel: debug
`, bed.Env["CALICO1_IP"], bed.Env["CALICO2_IP"], holdTime)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.startAgent()
	return e
}

func (e *env) startAgent() {
	t := e.t
	e.agent = agentproc.Start(t, e.bed, "edge", e.config)
	// The pod routes come from BGP: wait until the edge can reach both pods.
	poll.Until(t, 30*time.Second, "the pod blocks learned into the edge kernel", func() (bool, string) {
		out, _ := e.bed.Exec("edge", "ip", "route", "show", "proto", "237")
		return strings.Contains(out, "10.244.1.0/24") && strings.Contains(out, "10.244.2.0/24"), out
	})
}

// route writes an LBRoute for vip with the given pods as reals and a TCP
// check with the timing above.
func (e *env) route(name, vip string, pods ...int) { e.routeRiseFall(name, vip, rise, fall, pods...) }

func (e *env) routeRiseFall(name, vip string, rise, fall int, pods ...int) {
	e.t.Helper()
	var reals []string
	for _, n := range pods {
		reals = append(reals, fmt.Sprintf("{ip: %s}", e.bed.Env[fmt.Sprintf("POD%d_IP", n)]))
	}
	doc := fmt.Sprintf(`apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: %s, namespace: shop}
spec:
  vsIP: %s
  ports: [{port: 80, protocol: TCP, targetPort: %d}]
  realServers: [%s]
  healthCheck: {type: TCP, intervalSeconds: %d, timeoutSeconds: %d, riseCount: %d, fallCount: %d}
`, name, vip, podPort, strings.Join(reals, ", "), int(interval.Seconds()), int(timeout.Seconds()), rise, fall)
	path := filepath.Join(e.dir, "routes", name+".yaml")
	if err := os.WriteFile(path+".tmp", []byte(doc), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		e.t.Fatal(err)
	}
}

// server is an HTTP server in a pod namespace, answering "podN".
type server struct {
	e   *env
	pod int
	cmd *exec.Cmd
}

func (e *env) server(pod int) *server {
	s := &server{e: e, pod: pod}
	www := filepath.Join(e.dir, fmt.Sprintf("www%d", pod))
	if err := os.MkdirAll(www, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), fmt.Appendf(nil, "pod%d\n", pod), 0o644); err != nil {
		e.t.Fatal(err)
	}
	s.start()
	e.t.Cleanup(s.stop)
	return s
}

func (s *server) ip() string { return s.e.bed.Env[fmt.Sprintf("POD%d_IP", s.pod)] }

func (s *server) start() {
	t := s.e.t
	t.Helper()
	s.cmd = s.e.bed.Command(fmt.Sprintf("pod%d", s.pod), "python3", "-m", "http.server", fmt.Sprint(podPort),
		"--bind", s.ip(), "--directory", filepath.Join(s.e.dir, fmt.Sprintf("www%d", s.pod)))
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, fmt.Sprintf("pod%d server listening", s.pod), func() (bool, string) {
		out, err := s.e.bed.Exec(fmt.Sprintf("pod%d", s.pod), "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", s.ip(), podPort))
		return err == nil, out
	})
}

// stop kills the server (ip netns exec execs it, so the PID is python's).
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// nat returns the edge's iptables nat table.
func (e *env) nat() string {
	out, _ := e.bed.Exec("edge", "iptables-save", "-t", "nat")
	return out
}

// inChains reports whether the nat table sends new connections to ip:port.
func inChains(nat, ip string) bool {
	return strings.Contains(nat, fmt.Sprintf("--to-destination %s:%d", ip, podPort))
}

func (e *env) status() (status.Report, error) {
	return e.agent.Status()
}

func (e *env) real(vip, ip string) (status.Real, bool) {
	rep, err := e.status()
	if err != nil {
		return status.Real{}, false
	}
	for _, vs := range rep.VirtualServices {
		if vs.VIP != vip {
			continue
		}
		for _, r := range vs.Reals {
			if r.IP == ip {
				return r, true
			}
		}
	}
	return status.Real{}, false
}

// curl asks the VIP once from the client namespace.
func (e *env) curl(vip string) (string, error) {
	out, err := e.bed.Exec("client", "curl", "-s", "--max-time", "1", "http://"+vip+"/")
	return strings.TrimSpace(out), err
}

// birdHas reports whether calico1's BIRD has the VIP's /32.
func (e *env) birdHas(vip string) bool {
	_, ok := e.bed.BirdRoute(1, vip+"/32")
	return ok
}

// TestDeadPodLeavesChainsAndClientSeesNoErrors stops one pod's server while
// a client loops requests to the VIP.
func TestDeadPodLeavesChainsAndClientSeesNoErrors(t *testing.T) {
	e := setup(t)
	pod1, pod2 := e.server(1), e.server(2)
	const vip = "10.200.0.10"
	e.route("web", vip, 1, 2)
	poll.Until(t, 20*time.Second, "BIRD to have the VIP", func() (bool, string) { return e.birdHas(vip), "" })
	poll.Until(t, 20*time.Second, "both pods answering through the VIP", func() (bool, string) {
		seen := map[string]bool{}
		for range 6 {
			out, _ := e.curl(vip)
			seen[out] = true
		}
		return seen["pod1"] && seen["pod2"], fmt.Sprint(seen)
	})

	// A client looping requests, as a user would.
	type result struct {
		at  time.Time
		out string
		err error
	}
	var mu sync.Mutex
	var results []result
	stopClient := make(chan struct{})
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		for {
			select {
			case <-stopClient:
				return
			default:
			}
			out, err := e.curl(vip)
			mu.Lock()
			results = append(results, result{time.Now(), out, err})
			mu.Unlock()
		}
	}()
	defer func() { close(stopClient); <-clientDone }()

	time.Sleep(time.Second)
	pod1.stop()
	stopped := time.Now()
	var removed time.Time
	poll.Until(t, 15*time.Second, "pod1 out of the edge's chains", func() (bool, string) {
		nat := e.nat()
		removed = time.Now()
		return !inChains(nat, pod1.ip()) && inChains(nat, pod2.ip()), nat
	})
	took := removed.Sub(stopped)
	// fall × interval + timeout, plus the reconcile and one poll.
	if limit := fall*interval + timeout + time.Second; took > limit {
		t.Errorf("pod1 left the chains %v after its server stopped, want within %v", took, limit)
	}
	t.Logf("pod1 left the chains %v after its server stopped", took.Round(10*time.Millisecond))

	// From then on the client sees no error, only pod2.
	time.Sleep(3 * time.Second)
	mu.Lock()
	var after, errs []string
	for _, r := range results {
		if r.at.Before(removed) {
			continue
		}
		after = append(after, r.out)
		if r.err != nil || r.out != "pod2" {
			errs = append(errs, fmt.Sprintf("%s: %q %v", r.at.Sub(removed).Round(time.Millisecond), r.out, r.err))
		}
	}
	mu.Unlock()
	if len(after) < 10 {
		t.Fatalf("only %d client requests after pod1 left the chains", len(after))
	}
	if len(errs) > 0 {
		t.Errorf("%d of %d client requests after pod1 left the chains failed or reached another pod: %v", len(errs), len(after), errs)
	}

	r, ok := e.real(vip, pod1.ip())
	if !ok || r.Healthy || r.LastResult != "connect: connection refused" || r.Since.IsZero() {
		t.Errorf("status of pod1: %+v (found %v), want unhealthy, connection refused, since set", r, ok)
	}

	// Back after rise successes.
	pod1.start()
	poll.Until(t, rise*interval+timeout+5*time.Second, "pod1 back in the chains", func() (bool, string) {
		return inChains(e.nat(), pod1.ip()), ""
	})
}

// TestAllPodsDownWithdrawsVIP stops every pod of a VIP: BIRD loses the /32;
// one pod back brings it back after rise.
func TestAllPodsDownWithdrawsVIP(t *testing.T) {
	e := setup(t)
	pod1, pod2 := e.server(1), e.server(2)
	const vip, other = "10.200.0.20", "10.200.0.21"
	e.route("web", vip, 1, 2)
	e.route("other", other, 1) // another VIP on pod1: its announcement must not move
	poll.Until(t, 20*time.Second, "BIRD to have both VIPs", func() (bool, string) { return e.birdHas(vip) && e.birdHas(other), "" })

	pod2.stop()
	time.Sleep(fall*interval + timeout + time.Second)
	if !e.birdHas(vip) || !e.birdHas(other) {
		t.Fatal("a VIP was withdrawn while one of its pods was still up")
	}
	pod1.stop()
	stopped := time.Now()
	poll.Until(t, 15*time.Second, "BIRD to lose the VIP", func() (bool, string) { return !e.birdHas(vip), "" })
	poll.Until(t, 5*time.Second, "BIRD to lose the other VIP (its only pod stopped too)", func() (bool, string) { return !e.birdHas(other), "" })
	took := time.Since(stopped)
	if limit := fall*interval + timeout + 2*time.Second; took > limit {
		t.Errorf("VIP withdrawn %v after the last pod stopped, want within %v", took, limit)
	}
	t.Logf("VIP withdrawn from BIRD %v after its last pod stopped", took.Round(10*time.Millisecond))

	// Past the hold time, recovery is not held back: back after rise.
	time.Sleep(holdTime)
	pod2.start()
	started := time.Now()
	poll.Until(t, 15*time.Second, "BIRD to have the VIP again", func() (bool, string) { return e.birdHas(vip), "" })
	took = time.Since(started)
	if min, limit := (rise-1)*interval, rise*interval+timeout+2*time.Second; took < min || took > limit {
		t.Errorf("VIP back in BIRD %v after a pod returned, want between %v (rise) and %v", took, min, limit)
	}
	t.Logf("VIP back in BIRD %v after a pod returned", took.Round(10*time.Millisecond))
}

// TestFlappingPodDoesNotFlapRoute flaps a VIP's only pod every second, with
// rise = fall = 1 so the verdict follows every flap, and counts the VIP's
// changes in BIRD: at most one per hold time.
func TestFlappingPodDoesNotFlapRoute(t *testing.T) {
	e := setup(t)
	pod := e.server(1)
	const vip = "10.200.0.30"
	e.routeRiseFall("flappy", vip, 1, 1, 1)
	poll.Until(t, 20*time.Second, "BIRD to have the VIP", func() (bool, string) { return e.birdHas(vip), "" })
	// The agent damps nothing during its first hold time (probes that ran
	// before BGP installed the pod routes must not hold a VIP down):
	// flap only once that is over.
	if wait := time.Until(e.agent.Started().Add(holdTime + time.Second)); wait > 0 {
		time.Sleep(wait)
	}

	// Watch BIRD: every change of the VIP's presence, with when it can
	// have happened: after the start of the last poll that still saw the
	// old state (lo) and before the end of the poll that saw the new one
	// (hi). On a loaded machine one birdc call can take seconds, so the
	// moment a poll returns says little on its own.
	type change struct {
		lo, hi  time.Time
		present bool
	}
	var mu sync.Mutex
	now := time.Now()
	changes := []change{{now, now, true}}
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		last, lastStart := true, time.Now()
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			pollStart := time.Now()
			if has := e.birdHas(vip); has != last {
				last = has
				mu.Lock()
				changes = append(changes, change{lastStart, time.Now(), has})
				mu.Unlock()
			}
			lastStart = pollStart
		}
	}()

	// Flap by refusing connections in the pod's namespace (a TCP reset,
	// like a stopped server) every other second: quicker and more regular
	// than restarting the server.
	refuse := func(on bool) {
		op := "-D"
		if on {
			op = "-I"
		}
		if out, err := e.bed.Exec("pod1", "iptables", op, "INPUT", "-p", "tcp", "--dport", fmt.Sprint(podPort),
			"-j", "REJECT", "--reject-with", "tcp-reset"); err != nil {
			t.Fatalf("iptables %s: %v %s", op, err, out)
		}
	}
	const flapping = 16 * time.Second
	start := time.Now()
	up := true
	for time.Since(start) < flapping {
		time.Sleep(time.Second)
		refuse(up)
		up = !up
	}
	if !up {
		refuse(false)
	}
	// Let the last held change settle, then stop watching.
	poll.Until(t, holdTime+10*time.Second, "the VIP back in BIRD after the flapping", func() (bool, string) { return e.birdHas(vip), "" })
	time.Sleep(holdTime)
	close(stopWatch)
	<-watchDone

	mu.Lock()
	defer mu.Unlock()
	var desc []string
	for _, c := range changes[1:] {
		desc = append(desc, fmt.Sprintf("%s:%v", c.hi.Sub(start).Round(100*time.Millisecond), c.present))
	}
	t.Logf("VIP changes in BIRD during %v of flapping every second (hold %v): %d %v", flapping, holdTime, len(changes)-1, desc)
	if len(changes) < 2 {
		t.Fatal("the VIP never left BIRD while its only pod was down half the time")
	}
	// The verdicts must have flapped more than the route: count them in
	// the agent's log.
	logData, err := os.ReadFile(e.agent.Log)
	if err != nil {
		t.Fatal(err)
	}
	flips := 0
	for _, l := range strings.Split(string(logData), "\n") {
		if strings.Contains(l, "real health changed") && strings.Contains(l, pod.ip()) {
			flips++
		}
	}
	t.Logf("the pod's verdict flipped %d times", flips)
	if flips < len(changes)+2 {
		t.Errorf("the verdict flipped %d times for %d route changes: the test did not flap the route's input enough to show damping", flips, len(changes)-1)
	}
	// BGP propagation blurs each change by a little more. Fail only when
	// two changes were certainly closer than the hold: even the latest
	// moment of the second and the earliest of the first are too close.
	const slack = 700 * time.Millisecond
	for i := 2; i < len(changes); i++ {
		if gap := changes[i].hi.Sub(changes[i-1].lo); gap < holdTime-slack {
			t.Errorf("VIP changed twice within at most %v (%v), hold time is %v", gap, desc, holdTime)
		}
	}
	if most := int((flapping+2*holdTime)/holdTime) + 1; len(changes)-1 > most {
		t.Errorf("%d VIP changes, want at most %d", len(changes)-1, most)
	}
}
