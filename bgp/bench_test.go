package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/model"
)

// Benchmarks against real BIRD in the test bed. Each reports its own
// figures (p50/p99, seconds) with b.ReportMetric; run them once:
//
//	go test ./bgp -run '^$' -bench . -benchtime 1x

// routeWatch follows route additions and removals in a namespace's kernel
// (BIRD writes every route it selects there right after its RIB changes),
// giving arrival times without polling birdc.
type routeWatch struct {
	ch   chan netlink.RouteUpdate
	done chan struct{}
}

func watchRoutes(b testing.TB, nsName string) *routeWatch {
	b.Helper()
	h, err := netns.GetFromName(nsName)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	w := &routeWatch{ch: make(chan netlink.RouteUpdate, 65536), done: make(chan struct{})}
	err = netlink.RouteSubscribeWithOptions(w.ch, w.done, netlink.RouteSubscribeOptions{
		Namespace: &h, ReceiveBufferSize: 8 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			select {
			case <-w.done: // closing the subscription ends its reader
			default:
				b.Logf("route subscription: %v", err)
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { close(w.done) })
	return w
}

// waitAdd returns when prefix is added.
func (w *routeWatch) waitAdd(b testing.TB, prefix netip.Prefix, timeout time.Duration) time.Time {
	b.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case u := <-w.ch:
			if u.Type == 24 /* RTM_NEWROUTE */ && u.Dst != nil && u.Dst.String() == prefix.String() {
				return time.Now()
			}
		case <-t.C:
			b.Fatalf("%s did not reach the peer's kernel in %s", prefix, timeout)
		}
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func vipN(i int) model.VIPRoute {
	return model.VIPRoute{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), 32)}
}

// Announce() call → the /32 in BIRD (its kernel export), 100 new VIPs one
// at a time.
func BenchmarkAnnounceToBIRD(b *testing.B) {
	bed := testbed.Up(b, testbed.Options{WithoutFRR: true})
	d := startSpeakerd(b, bed, bedConfig(), bedPeers(bed, false))
	d.announce(vipN(0))
	waitEstablished(b, d, bed.Env["CALICO1_IP"])
	w := watchRoutes(b, bed.NS("calico1"))
	w.waitAdd(b, vipN(0).Prefix, 10*time.Second)
	for b.Loop() {
		var lat []time.Duration
		routes := []model.VIPRoute{vipN(0)}
		for i := 1; i <= 100; i++ {
			routes = append(routes, vipN(i))
			start := time.Now()
			d.announce(routes...)
			lat = append(lat, w.waitAdd(b, vipN(i).Prefix, 5*time.Second).Sub(start))
		}
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(slices.Max(lat).Microseconds())/1000, "max-ms")
		d.announce(vipN(0))
	}
}

// birdCount is the number of routes BIRD has from the edge.
func birdCount(bed *testbed.Bed) int {
	out, _ := bed.Birdc(1, "show", "route", "protocol", bed.EdgeProtocol(), "count")
	// "10000 of 10001 routes for 10001 networks in table master4"
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[1] == "of" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	return -1
}

// 10,000 VIPs from empty → all in BIRD's RIB; then all withdrawn.
func Benchmark10kVIPs(b *testing.B) {
	bed := testbed.Up(b, testbed.Options{WithoutFRR: true})
	d := startSpeakerd(b, bed, bedConfig(), bedPeers(bed, false))
	d.announce()
	waitEstablished(b, d, bed.Env["CALICO1_IP"])
	routes := make([]model.VIPRoute, 10000)
	for i := range routes {
		routes[i] = vipN(i)
	}
	for b.Loop() {
		start := time.Now()
		r := d.announce(routes...)
		announced := time.Since(start)
		poll.Until(b, 30*time.Second, "10,000 routes in BIRD", func() (bool, string) {
			n := birdCount(bed)
			return n == 10000, fmt.Sprint(n)
		})
		all := time.Since(start)
		start = time.Now()
		d.announce()
		poll.Until(b, 30*time.Second, "BIRD to drop them all", func() (bool, string) {
			n := birdCount(bed)
			return n == 0, fmt.Sprint(n)
		})
		gone := time.Since(start)
		b.ReportMetric(r.Elapsed.Seconds(), "announce-call-s")
		b.ReportMetric(announced.Seconds(), "announce-rtt-s")
		b.ReportMetric(all.Seconds(), "all-in-bird-s")
		b.ReportMetric(gone.Seconds(), "all-withdrawn-s")
	}
}

// The speaker's own memory with 10,000 advertised VIPs and 1,000 learned
// routes installed in the kernel (FRR announces them).
func BenchmarkSpeakerMemory(b *testing.B) {
	var nets []string
	for i := range 1000 {
		nets = append(nets, fmt.Sprintf("10.244.%d.%d/28", 128+i/16, (i%16)*16))
	}
	bed := testbed.Up(b, testbed.Options{FRRNetworks: strings.Join(nets, " ")})
	d := startSpeakerd(b, bed, bedConfig(), bedPeers(bed, true))
	routes := make([]model.VIPRoute, 10000)
	for i := range routes {
		routes[i] = vipN(i)
	}
	for b.Loop() {
		d.announce(routes...)
		waitEstablished(b, d, bed.Env["CALICO1_IP"], bed.Env["FRR_IP"])
		poll.Until(b, 30*time.Second, "10,000 routes in BIRD", func() (bool, string) {
			n := birdCount(bed)
			return n == 10000, fmt.Sprint(n)
		})
		poll.Until(b, 30*time.Second, "1,001 learned routes installed", func() (bool, string) {
			n := len(d.call(speakerdReq{Op: "learned"}).Learned)
			return n == 1001, fmt.Sprint(n)
		})
		heap := d.call(speakerdReq{Op: "memstats"}).HeapInuse
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "RssAnon:") {
				kb, _ := strconv.Atoi(f[1])
				b.ReportMetric(float64(kb)/1024, strings.ToLower(strings.TrimSuffix(f[0], ":"))+"-MiB")
			}
		}
		b.ReportMetric(float64(heap)/(1<<20), "heap-inuse-after-gc-MiB")
	}
}
