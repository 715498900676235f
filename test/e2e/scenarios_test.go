package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/agentproc"
)

// settle lets the loops run a little on the recovered agent, so a late
// failure (a rule missing after adoption, say) is counted too.
const settle = 2 * time.Second

// waitGREnd waits until neither calico node holds the edge's routes as
// stale any more (the new agent sent its End-of-RIB).
func (s *suite) waitGREnd(t *testing.T) {
	t.Helper()
	for _, n := range []int{1, 2} {
		poll.Until(t, 20*time.Second, fmt.Sprintf("calico%d to end the graceful restart", n), func() (bool, string) {
			return !s.bed.BirdGRActive(n, s.bed.EdgeProtocol()), ""
		})
	}
}

func (s *suite) waitBirdNoticed(t *testing.T) {
	t.Helper()
	poll.Until(t, 15*time.Second, "calico1 to notice the agent is gone", func() (bool, string) {
		st := s.bed.BirdProtocolState(1, s.bed.EdgeProtocol())
		return !strings.Contains(st, "Established"), st
	})
}

// kill -9 the agent under load and start a new one: the peers keep the
// VIPs (graceful restart), the kernel keeps the rules, nothing fails.
func (s *suite) kill9(t *testing.T) {
	ls := s.startLoops()
	time.Sleep(time.Second)
	s.agent.Kill()
	s.waitBirdNoticed(t)
	if !s.bed.BirdGRActive(1, s.bed.EdgeProtocol()) {
		t.Error("calico1 is not holding the edge's routes as a graceful-restart helper")
	}
	s.startAgent()
	bird := s.waitBirdEstablished(t, 1, 15*time.Second)
	all := s.waitEstablished(t, 15*time.Second)
	s.waitGREnd(t)
	time.Sleep(settle)
	failed := s.expectNoFailures(t, ls)
	s.record("kill -9 + restart: %d failed of %d requests; calico1 Established %s after the restart, all three peers %s (process start included)",
		failed, s.requests(ls), bird.Round(time.Millisecond), all.Round(time.Millisecond))
}

// A rolling restart: SIGTERM (the agent exits 0 leaving its state for the
// next one), then a new process.
func (s *suite) rollingRestart(t *testing.T) {
	ls := s.startLoops()
	time.Sleep(time.Second)
	code, err := s.agent.Term(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	s.waitBirdNoticed(t)
	s.startAgent()
	bird := s.waitBirdEstablished(t, 1, 15*time.Second)
	all := s.waitEstablished(t, 15*time.Second)
	s.waitGREnd(t)
	time.Sleep(settle)
	failed := s.expectNoFailures(t, ls)
	s.record("rolling restart (SIGTERM, new process): %d failed of %d requests; calico1 Established %s after the restart, all three peers %s",
		failed, s.requests(ls), bird.Round(time.Millisecond), all.Round(time.Millisecond))
}

// blackholeRules silently drop the edge's traffic with the apiserver, both
// directions, in the apiserver's namespace.
func (s *suite) blackholeRules(op string) [][]string {
	edge := s.bed.Env["EDGE_IP"]
	port := fmt.Sprint(s.api.Port)
	return [][]string{
		{"iptables", op, "INPUT", "-s", edge, "-p", "tcp", "--dport", port, "-j", "DROP"},
		{"iptables", op, "OUTPUT", "-d", edge, "-p", "tcp", "--sport", port, "-j", "DROP"},
	}
}

// apiExec runs a command in the apiserver's namespace.
func (s *suite) apiExec(t *testing.T, args ...string) {
	t.Helper()
	b, err := exec.Command("ip", append([]string{"netns", "exec", s.apiNS}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, b)
	}
}

func (s *suite) binary() string { return agentproc.Binary(s.t) }

// The apiserver unreachable for 60 s, silently: the agent keeps serving
// what it has; a route created during the outage is programmed within
// ReadIdleTimeout + PingTimeout + 2 s of the path healing.
func (s *suite) apiserverBlackhole(t *testing.T) {
	rep, err := s.agent.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.APIServer.Connected {
		t.Fatalf("agent not connected to the apiserver before the outage: %+v", rep.APIServer)
	}
	reconnects := rep.APIServer.Reconnects
	pid := s.agent.PID()
	ls := s.startLoops()
	time.Sleep(time.Second)
	for _, r := range s.blackholeRules("-I") {
		s.apiExec(t, r...)
	}
	cut := time.Now()
	healed := false
	heal := func() {
		if healed {
			return
		}
		healed = true
		for _, r := range s.blackholeRules("-D") {
			s.apiExec(t, r...)
		}
	}
	t.Cleanup(heal)
	// kubectl runs in the apiserver's namespace: the change lands while
	// the edge cannot see it.
	s.mustApply(t, s.route("shop", "late", vipLate, s.bed.Env["POD2_IP"]))
	s.goodVIPs = append(s.goodVIPs, vipLate)
	// The HTTP/2 health check finds the silent connection dead after
	// readIdleTimeout + pingTimeout; the agent then reports it.
	down, _, _ := poll.Every(250*time.Millisecond).Wait(time.Until(cut.Add(blackhole-time.Second)), func() (bool, string) {
		rep, err := s.agent.Status()
		return err == nil && !rep.APIServer.Connected, ""
	})
	var detected time.Duration
	if down {
		detected = time.Since(cut)
	}
	if !down {
		t.Errorf("the agent still reported its apiserver connection up %s into the blackhole", blackhole)
	} else if bound := readIdleTimeout + pingTimeout + 2*time.Second; detected > bound {
		t.Errorf("the agent found the dead connection %s into the blackhole, want <= %s", detected, bound)
	}
	time.Sleep(time.Until(cut.Add(blackhole)))
	rep, err = s.agent.Status()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.vs(rep, vipLate); ok {
		t.Fatal("the agent saw the route created during the outage: the blackhole did not cut it off")
	}
	t.Logf("agent's view at the end of the outage: apiserver %+v, degraded %v", rep.APIServer, rep.Degraded)
	heal()
	healedAt := time.Now()
	var last string
	poll.Until(t, 60*time.Second, "the route created during the outage programmed", func() (bool, string) {
		rep, err := s.agent.Status()
		if err != nil {
			return false, err.Error()
		}
		v, ok := s.vs(rep, vipLate)
		last = fmt.Sprintf("%+v apiserver %+v", v, rep.APIServer)
		return ok && v.Programmed, last
	})
	took := time.Since(healedAt)
	bound := readIdleTimeout + pingTimeout + 2*time.Second
	s.waitServing(t, vipLate, "pod2")
	served := time.Since(healedAt)
	// The status side recovers too: the leader (this agent, after
	// re-acquiring its Lease) accepts the new route in its status.
	poll.Until(t, 30*time.Second, "Accepted=True on the route created during the outage", func() (bool, string) {
		out, err := s.api.Kubectl(t.Context(), "get", "lbr", "-n", "shop", "late", "-o",
			`jsonpath={.status.conditions[?(@.type=="Accepted")].status}`)
		return err == nil && strings.TrimSpace(out) == "True", out
	})
	accepted := time.Since(healedAt)
	time.Sleep(settle)
	failed := s.expectNoFailures(t, ls)
	rep, _ = s.agent.Status()
	if rep.APIServer.Reconnects <= reconnects {
		t.Errorf("apiserver reconnects %d -> %d: the agent never lost its connection", reconnects, rep.APIServer.Reconnects)
	}
	if s.agent.PID() != pid || !s.agent.Alive() {
		t.Error("the agent restarted during the outage")
	}
	s.record("apiserver blackholed %s: agent reported the connection down %s into it; %d failed of %d requests; change made during the outage programmed %s after the path healed (bound %s = readIdleTimeout %s + pingTimeout %s + 2s), served by the client %s after, Accepted=True in its status %s after",
		blackhole, detected.Round(time.Millisecond), failed, s.requests(ls), took.Round(time.Millisecond), bound, readIdleTimeout, pingTimeout, served.Round(time.Millisecond), accepted.Round(time.Millisecond))
	if took > bound {
		t.Errorf("the change took %s after the path healed, want <= %s", took, bound)
	}
}

func (s *suite) edgeHasPodRoute(n int) (bool, string) {
	out, _ := s.bed.Exec("edge", "ip", "route", "show", "proto", "237")
	return strings.Contains(out, fmt.Sprintf("10.244.%d.0/24 via %s", n, s.bed.Env[fmt.Sprintf("CALICO%d_IP", n)])), out
}

func (s *suite) waitBirdRecovered(t *testing.T) {
	t.Helper()
	s.waitBirdEstablished(t, 1, 30*time.Second)
	poll.Until(t, 20*time.Second, "calico1's pod block back in the edge kernel", func() (bool, string) { return s.edgeHasPodRoute(1) })
	poll.Until(t, 20*time.Second, "calico1 to have the VIPs again", func() (bool, string) {
		o1, ok1 := s.bed.BirdRoute(1, vipWeb+"/32")
		o2, ok2 := s.bed.BirdRoute(1, vipWeb2+"/32")
		return ok1 && ok2, o1 + o2
	})
	poll.Until(t, 20*time.Second, "the agent's session with calico1", func() (bool, string) {
		m := s.neighbors()
		return m[s.bed.Env["CALICO1_IP"]] == "established", fmt.Sprint(m)
	})
}

// One Calico node's BIRD restarted. Pod1 sits behind calico1, pod2 behind
// calico2; the edge reaches each pod block only through its own node
// (iBGP: calico2 does not re-advertise calico1's block).
//
//   - A crash (kill -9) and restart: the edge holds calico1's routes as a
//     graceful-restart helper and calico1's kernel keeps forwarding, so no
//     request fails on either VIP.
//   - An orderly restart (SIGTERM: BIRD sends a Cease, which ends graceful
//     restart): the edge withdraws calico1's block at once, so pod1 is
//     unreachable until BIRD is back. web2 (pod2 only) must not lose a
//     request; web (pod1 + pod2) may lose the requests sent to pod1 before
//     its health check (1 s interval, fall 2) takes it out — they are
//     counted and logged, not asserted — and must be served by both pods
//     again once the routes recover.
func (s *suite) birdRestart(t *testing.T) {
	ls := s.startLoops()
	time.Sleep(time.Second)
	s.bed.StopBird(1, true)
	down := time.Now()
	s.bed.StartBird()
	s.waitBirdRecovered(t)
	crashRecovered := time.Since(down)
	time.Sleep(settle)
	failed := s.expectNoFailures(t, ls)
	s.record("calico1 BIRD kill -9 + restart: %d failed of %d requests; session and routes back %s after the kill",
		failed, s.requests(ls), crashRecovered.Round(time.Millisecond))

	ls = s.startLoops()
	time.Sleep(time.Second)
	s.bed.StopBird(1, false)
	down = time.Now()
	poll.Until(t, 10*time.Second, "the edge to drop calico1's pod block", func() (bool, string) {
		ok, out := s.edgeHasPodRoute(1)
		return !ok, out
	})
	time.Sleep(3 * time.Second) // serve a while with calico1's BIRD down
	s.bed.StartBird()
	s.waitBirdRecovered(t)
	recovered := time.Since(down)
	s.waitServing(t, vipWeb, "pod1", "pod2")
	time.Sleep(settle)
	ls.stop()
	web, web2 := ls[0], ls[1]
	t.Logf("%s", web)
	t.Logf("%s", web2)
	if web2.fails.Load() > 0 || web2.total.Load() == 0 {
		t.Errorf("requests to the VIP behind the surviving node failed: %s", web2)
	}
	// web may fail only until pod1's health check takes it out: fallCount
	// probes 1 s apart, each up to its 1 s timeout, plus slack for a
	// loaded machine.
	if last := web.lastFailure(); !last.IsZero() {
		window := 2*time.Second + time.Second + 2*time.Second
		if after := last.Sub(down); after > window {
			t.Errorf("requests to %s still failed %s after calico1's BIRD stopped; pod1's health check should have taken it out within %s", vipWeb, after.Round(time.Millisecond), window)
		}
		t.Logf("last failed request to %s ended %s after the stop", vipWeb, last.Sub(down).Round(time.Millisecond))
	}
	s.record("calico1 BIRD orderly restart: %d failed of %d requests to %s (pod2, surviving node); %d failed of %d to %s (pod1+pod2, before pod1's health check fell); routes back %s after the stop",
		web2.fails.Load(), web2.total.Load(), vipWeb2, web.fails.Load(), web.total.Load(), vipWeb, recovered.Round(time.Millisecond))
	if !s.agent.Alive() {
		t.Error("the agent exited while BIRD restarted")
	}
}

// After the suite, `edgeagent cleanup` leaves the edge namespace as it was
// before the agent first started.
func (s *suite) cleanup(t *testing.T) {
	if _, err := s.agent.Term(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	// SIGTERM leaves the agent's state for its successor: the comparison
	// below is only meaningful if there was something to clean.
	left := captureEdge(t, s.bed)
	rules := "iptables"
	if s.backend == "nftables" {
		rules = "nftables"
	}
	if left["links"] == s.before["links"] || left[rules] == s.before[rules] {
		t.Errorf("after SIGTERM the edge namespace holds no VIP interface or no rules of the agent (%s):\n%s\n%s", rules, left["links"], left[rules])
	}
	out, err := s.bed.Exec("edge", s.binary(), "cleanup", "--config", s.config)
	if err != nil {
		t.Fatalf("edgeagent cleanup: %v\n%s", err, out)
	}
	after := captureEdge(t, s.bed)
	same := true
	for k, v := range s.before {
		if after[k] != v {
			same = false
			t.Errorf("%s differs after cleanup:\n--- before\n%s\n--- after\n%s", k, v, after[k])
		}
	}
	s.record("edgeagent cleanup: edge namespace identical to before the first start (iptables, ip6tables, nftables tables, links, addresses, routes, rules, forwarding sysctls): %v", same)
}
