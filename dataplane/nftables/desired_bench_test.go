package nftables

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/model"
)

func benchServices(n int) []model.VirtualService {
	var s []model.VirtualService
	vip := netip.MustParseAddr("10.200.0.0")
	for i := 0; i < n; i++ {
		vip = vip.Next()
		s = append(s, model.VirtualService{Namespace: "bench", Route: fmt.Sprintf("svc%05d", i), VIP: vip, Port: 80, Protocol: model.TCP,
			Policy: model.RoundRobin, Reals: []model.Real{lbbed.RealV4(1), lbbed.RealV4(2), lbbed.RealV4(3), lbbed.RealV4(4)}})
	}
	return s
}

// BenchmarkDesiredUpdate10k is the user-space part of a one-service change
// among 10,000 (no kernel): the pass over the input, the re-render of the
// changed service and its element changes.
func BenchmarkDesiredUpdate10k(b *testing.B) {
	s := benchServices(10000)
	d := newDesired()
	d.update(s)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vs := &s[(i*7919)%len(s)]
		if len(vs.Reals) == 4 {
			vs.Reals = vs.Reals[:3]
		} else {
			vs.Reals = slices.Clone(s[0].Reals[:1])
			vs.Reals = append(vs.Reals, lbbed.RealV4(2), lbbed.RealV4(3), lbbed.RealV4(4))
		}
		d.update(s)
		d.clean()
	}
}

// BenchmarkDesiredNoChange10k is the pass alone.
func BenchmarkDesiredNoChange10k(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := benchServices(10000)
	d := newDesired()
	d.update(s)
	b.ReportAllocs()
	b.ResetTimer()
	c0 := threadCPU()
	for i := 0; i < b.N; i++ {
		d.update(s)
	}
	b.ReportMetric(float64((threadCPU()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// threadCPU is the calling thread's CPU time (the benchmark loop runs on
// one goroutine; pinned to its thread here).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
