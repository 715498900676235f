package bgpe2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/internal/testbed"
)

// End-to-end benchmarks with the real binary; run once:
//
//	go test ./test/bgpe2e -run '^$' -bench . -benchtime 1x

func vipAddr(i int) string {
	return netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}).String()
}

func subscribe(b testing.TB, nsName string) (chan netlink.RouteUpdate, chan struct{}) {
	b.Helper()
	h, err := netns.GetFromName(nsName)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ch, done := make(chan netlink.RouteUpdate, 65536), make(chan struct{})
	if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
		Namespace: &h, ReceiveBufferSize: 8 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(error) {},
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { close(done) })
	return ch, done
}

// An LBRoute file appears → the /32 in BIRD (its kernel export), 100 runs.
// Includes the file source's debounce.
func BenchmarkLBRouteFileToBIRD(b *testing.B) {
	bed := testbed.Up(b, testbed.Options{WithoutFRR: true})
	cfg := writeConfig(b, bed, b.TempDir(), "")
	a := startAgent(b, bed, cfg)
	writeRoute(b, cfg, "r0", vipAddr(0), bed)
	poll.Until(b, 20*time.Second, "first VIP in BIRD", func() (bool, string) {
		out, ok := bed.BirdRoute(1, vipAddr(0)+"/32")
		return ok, out
	})
	ch, _ := subscribe(b, bed.NS("calico1"))
	for b.Loop() {
		var lat []time.Duration
		for i := 1; i <= 100; i++ {
			want := vipAddr(i) + "/32"
			start := time.Now()
			writeRoute(b, cfg, fmt.Sprintf("r%d", i), vipAddr(i), bed)
			timeout := time.After(5 * time.Second)
		wait:
			for {
				select {
				case u := <-ch:
					if u.Type == 24 && u.Dst != nil && u.Dst.String() == want {
						lat = append(lat, time.Since(start))
						break wait
					}
				case <-timeout:
					b.Fatalf("%s not in BIRD after 5s", want)
				}
			}
		}
		s := slices.Clone(lat)
		slices.Sort(s)
		b.ReportMetric(float64(s[len(s)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(s[len(s)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(s[len(s)-1].Microseconds())/1000, "max-ms")
	}
	_ = a
}

func procStatus(pid int, key string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, key+":") {
			f := strings.Fields(l)
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return -1
}

// Agent RSS with 10,000 advertised VIPs (one LBRoute each) and 1,000
// learned routes (FRR announcing 1,000 prefixes inside importCIDRs).
func BenchmarkAgentRSS(b *testing.B) {
	var nets []string
	for i := range 1000 {
		nets = append(nets, fmt.Sprintf("10.244.%d.%d/28", 128+i/16, (i%16)*16))
	}
	bed := testbed.Up(b, testbed.Options{FRRNetworks: strings.Join(nets, " ")})
	cfg := writeConfig(b, bed, b.TempDir(), "")
	var doc strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&doc, `---
apiVersion: apv.arraynetworks.com/v1alpha1
kind: LBRoute
metadata: {name: r%d, namespace: bench}
spec:
  vsIP: %s
  ports: [{port: 80, protocol: TCP}]
  realServers: [{ip: %s}]
  healthCheck: {type: None}
`, i, vipAddr(i), bed.Env["POD1_IP"])
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "routes", "bench.yaml"), []byte(doc.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		start := time.Now()
		a := startAgent(b, bed, cfg)
		poll.Until(b, 60*time.Second, "10,000 VIPs in BIRD", func() (bool, string) {
			out, _ := bed.Birdc(1, "show", "route", "protocol", bed.EdgeProtocol(), "count")
			return strings.Contains(out, "10000 of"), out
		})
		ready := time.Since(start)
		poll.Until(b, 60*time.Second, "1,000 learned routes in the edge kernel", func() (bool, string) {
			n := strings.Count(edgeRoutes(bed), "\n")
			return n == 1001, fmt.Sprint(n) // 1,000 from FRR + calico1's block
		})
		pid := a.PID()
		rss, hwm := procStatus(pid, "VmRSS"), procStatus(pid, "VmHWM")
		if out, err := bed.Exec("edge", "curl", "-s", "http://127.0.0.1:19560/metrics"); err == nil {
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) == 2 && (f[0] == "go_memstats_heap_inuse_bytes" || f[0] == "go_memstats_heap_alloc_bytes" || f[0] == "go_memstats_sys_bytes") {
					v, _ := strconv.ParseFloat(f[1], 64)
					b.ReportMetric(v/(1<<20), strings.TrimPrefix(f[0], "go_memstats_")+"-MiB")
				}
			}
		}
		b.ReportMetric(float64(rss)/1024, "rss-MiB")
		b.ReportMetric(float64(procStatus(pid, "RssAnon"))/1024, "rss-anon-MiB")
		b.ReportMetric(float64(procStatus(pid, "RssFile"))/1024, "rss-file-MiB")
		b.ReportMetric(float64(hwm)/1024, "peak-rss-MiB")
		b.ReportMetric(ready.Seconds(), "start-to-10k-in-bird-s")
		a.Kill()
	}
}
