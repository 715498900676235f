package bgp

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/testbed"
)

// watchBird polls BIRD for prefix until stop is closed and counts the polls
// that did not find it.
func watchBird(bed *testbed.Bed, prefix string, stop <-chan struct{}) (missing *atomic.Int64, wait func()) {
	missing = &atomic.Int64{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, ok := bed.BirdRoute(1, prefix); !ok {
				missing.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return missing, wg.Wait
}

// A speaker killed with SIGKILL and started again: BIRD keeps the VIP
// through the graceful restart and never withdraws it; the session is back
// within 5 s; the learned route stays in the edge kernel throughout.
func TestGracefulRestartOfTheSpeaker(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{WithoutFRR: true})
	calico := bed.Env["CALICO1_IP"]
	cfg := bedConfig()
	d := startSpeakerd(t, bed, cfg, bedPeers(bed, false))
	d.announce(vip("10.200.0.10"))
	waitEstablished(t, d, calico)
	poll.Until(t, 10*time.Second, "BIRD to have the VIP", func() (bool, string) {
		out, ok := bed.BirdRoute(1, "10.200.0.10/32")
		return ok, out
	})
	poll.Until(t, 10*time.Second, "the calico block in the edge kernel", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return strings.Contains(out, "10.244.1.0/24"), out
	})

	stop := make(chan struct{})
	missing, wait := watchBird(bed, "10.200.0.10/32", stop)
	var kernelGone atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if out, err := bed.Exec("edge", "ip", "route", "show", "proto", "237"); err == nil && !strings.Contains(out, "10.244.1.0/24") {
				kernelGone.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	d.kill()
	poll.Until(t, 10*time.Second, "BIRD to notice the lost session", func() (bool, string) {
		s := bed.BirdProtocolState(1, bed.EdgeProtocol())
		return !strings.Contains(s, "Established"), s
	})
	if out, ok := bed.BirdRoute(1, "10.200.0.10/32"); !ok {
		t.Fatalf("BIRD dropped the VIP when the speaker died (no graceful restart):\n%s", out)
	}

	if !bed.BirdGRActive(1, bed.EdgeProtocol()) {
		t.Error("BIRD is not holding our routes as a graceful-restart helper")
	}
	restart := time.Now()
	d2 := startSpeakerd(t, bed, cfg, bedPeers(bed, false))
	d2.announce(vip("10.200.0.10"))
	// What graceful restart needs: the session back, and our routes
	// re-announced, before BIRD's restart time (120 s) runs out; how fast
	// is a figure for the benchmarks (docs/benchmarks/bgp.md), not an
	// assertion here.
	poll.Until(t, 60*time.Second, "BIRD session re-established well within its restart time", func() (bool, string) {
		s := bed.BirdProtocolState(1, bed.EdgeProtocol())
		return strings.Contains(s, "Established"), s
	})
	took := time.Since(restart)
	t.Logf("session re-established %s after the restart", took.Round(time.Millisecond))
	// GR ends with our End-of-RIB; BIRD then drops whatever stale routes
	// we did not re-announce.
	poll.Until(t, 10*time.Second, "BIRD to end the graceful restart (our End-of-RIB)", func() (bool, string) {
		return !bed.BirdGRActive(1, bed.EdgeProtocol()), ""
	})
	t.Logf("graceful restart over %s after the restart", time.Since(restart).Round(time.Millisecond))
	if _, ok := bed.BirdRoute(1, "10.200.0.10/32"); !ok {
		t.Error("BIRD lost the VIP when the graceful restart ended")
	}
	close(stop)
	wait()
	wg.Wait()
	if n := missing.Load(); n > 0 {
		t.Errorf("BIRD lacked the VIP in %d polls across the restart (withdrawn)", n)
	}
	if n := kernelGone.Load(); n > 0 {
		t.Errorf("the learned route left the edge kernel in %d polls across the restart", n)
	}
	if log, _ := bed.Birdc(1, "show", "route", "10.200.0.10/32", "all"); !strings.Contains(log, "via "+bed.Env["EDGE_IP"]) {
		t.Errorf("after restart:\n%s", log)
	}
}

// BIRD restarts, orderly and killed: sessions and learned routes come back,
// the speaker keeps running; with SIGKILL the learned route is kept through
// BIRD's restart (GoBGP as graceful-restart helper).
func TestPeerRestart(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{WithoutFRR: true})
	calico := bed.Env["CALICO1_IP"]
	d := startSpeakerd(t, bed, bedConfig(), bedPeers(bed, false))
	d.announce(vip("10.200.0.10"))
	waitEstablished(t, d, calico)
	poll.Until(t, 10*time.Second, "the calico block in the edge kernel", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return strings.Contains(out, "10.244.1.0/24"), out
	})

	for _, kill9 := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill9=%v", kill9), func(t *testing.T) {
			bed.StopBird(1, kill9)
			poll.Until(t, 10*time.Second, "the speaker to see the session drop", func() (bool, string) {
				n := d.neighbor(calico)
				return n.State != "established", fmt.Sprintf("%+v", n)
			})
			if kill9 {
				if out := edgeRoutes(t, bed); !strings.Contains(out, "10.244.1.0/24") {
					t.Errorf("learned route removed during the peer's graceful restart:\n%s", out)
				}
			}
			bed.StartBird()
			waitEstablished(t, d, calico)
			poll.Until(t, 15*time.Second, "BIRD to have the VIP again", func() (bool, string) {
				out, ok := bed.BirdRoute(1, "10.200.0.10/32")
				return ok, out
			})
			poll.Until(t, 10*time.Second, "the learned route back", func() (bool, string) {
				out := edgeRoutes(t, bed)
				return strings.Contains(out, "10.244.1.0/24 via "+calico), out
			})
		})
	}
}

// TCP MD5 with FRR: a wrong password never establishes and status says
// why; the right one establishes.
func TestMD5WithFRR(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{FRRPassword: "right-pw", CalicoNodes: 1})
	frr := netip.MustParseAddr(bed.Env["FRR_IP"])
	calico := netip.MustParseAddr(bed.Env["CALICO1_IP"])
	peers := []Peer{{Address: calico}, {Address: frr, Password: "wrong-pw"}}
	d := startSpeakerd(t, bed, bedConfig(), peers)
	d.announce(vip("10.200.0.10"))
	waitEstablished(t, d, calico.String())
	poll.Until(t, 20*time.Second, "status to explain the MD5 failure", func() (bool, string) {
		n := d.neighbor(frr.String())
		return n.State != "established" && strings.Contains(n.LastError, "MD5"), fmt.Sprintf("%+v", n)
	})
	t.Logf("wrong password: %+v", d.neighbor(frr.String()))
	peers[1].Password = "right-pw"
	if r := d.call(speakerdReq{Op: "peers", Peers: peers}); r.Error != "" {
		t.Fatal(r.Error)
	}
	waitEstablished(t, d, frr.String())
	if n := d.neighbor(frr.String()); n.LastError != "" {
		t.Errorf("established session still reports an error: %+v", n)
	}
	poll.Until(t, 10*time.Second, "FRR to have the VIP", func() (bool, string) {
		out, ok := bed.FRRRoute("10.200.0.10/32")
		return ok, out
	})
}

// A peer with the wrong ASN is refused, says why, and is backed off.
func TestMisconfiguredPeerBacksOff(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{CalicoNodes: 1})
	frr := bed.Env["FRR_IP"]
	peers := []Peer{{Address: netip.MustParseAddr(frr), ASN: 65999}}
	d := startSpeakerd(t, bed, bedConfig(), peers)
	d.announce(vip("10.200.0.10"))
	poll.Until(t, 60*time.Second, "the peer to be held down", func() (bool, string) {
		n := d.neighbor(frr)
		return strings.Contains(n.LastError, "as number mismatch") && strings.Contains(n.LastError, "backing off"), fmt.Sprintf("%+v", n)
	})
	t.Logf("held down: %+v", d.neighbor(frr))
}

// A peer that dies and does not come back: its routes stay for the
// restart time it announced, then leave the kernel.
func TestLearnedRoutesExpireAfterPeerRestartTime(t *testing.T) {
	t.Parallel()
	bed := testbed.Up(t, testbed.Options{WithoutFRR: true, BirdGRTime: 3 * time.Second})
	calico := bed.Env["CALICO1_IP"]
	d := startSpeakerd(t, bed, bedConfig(), bedPeers(bed, false))
	d.announce()
	waitEstablished(t, d, calico)
	poll.Until(t, 10*time.Second, "the calico block in the edge kernel", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return strings.Contains(out, "10.244.1.0/24"), out
	})
	bed.StopBird(1, true)
	died := time.Now()
	poll.Until(t, 15*time.Second, "the block to leave the kernel after BIRD's restart time", func() (bool, string) {
		out := edgeRoutes(t, bed)
		return !strings.Contains(out, "10.244.1.0/24"), out
	})
	if gone := time.Since(died); gone < 2*time.Second {
		t.Errorf("the route left %s after the peer died: it should be kept for the peer's restart time (3s)", gone)
	} else {
		t.Logf("route kept %s after the peer died (restart time 3s)", gone.Round(time.Millisecond))
	}
}
