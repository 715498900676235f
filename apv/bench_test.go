package apv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/model"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// bigState is n virtual services with r reals each.
func bigState(n, r int) model.State {
	var s model.State
	for i := range n {
		vs := model.VirtualService{
			Namespace: "ns", Route: fmt.Sprintf("route-%d", i), Name: fmt.Sprintf("ns-route-%d", i),
			VIP: netip.AddrFrom4([4]byte{10, 200, byte(i / 250), byte(i%250 + 1)}), Port: 80, Protocol: model.TCP,
			Policy: model.WeightedRoundRobin, Health: model.DefaultHealth,
		}
		for j := range r {
			vs.Reals = append(vs.Reals, model.Real{IP: netip.AddrFrom4([4]byte{10, 244, byte(i % 256), byte(j + 1)}), Port: 8080, Weight: 1, Healthy: true})
		}
		s.Services = append(s.Services, vs)
	}
	return s
}

func BenchmarkRender1000x10(b *testing.B) {
	s := bigState(1000, 10)
	for b.Loop() {
		if _, err := Render(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDiff1000x10OneRealChanged(b *testing.B) {
	s := bigState(1000, 10)
	cur, _ := Render(s)
	s.Services[500].Reals[3].IP = netip.MustParseAddr("10.99.0.1")
	want, _ := Render(s)
	var n int
	for b.Loop() {
		n = len(Diff(cur, want))
	}
	b.ReportMetric(float64(n), "commands")
}

func BenchmarkParseRunning1000x10(b *testing.B) {
	c, _ := Render(bigState(1000, 10))
	text := strings.Join(c.Lines(), "\n")
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if got, _ := ParseConfig(text); len(got.Virtuals) != 1000 {
			b.Fatal("parse lost objects")
		}
	}
}

// BenchmarkSyncEmulator measures a full initial sync of 100 services with 5
// reals each against the emulator over TLS (one HTTPS request per command,
// as cli_extend requires), then an idle sync.
func BenchmarkSyncEmulator100x5(b *testing.B) {
	s := bigState(100, 5)
	for b.Loop() {
		b.StopTimer()
		h := newHarness(b, Options{Logger: discard}, "apv-a")
		_ = h.a.Reconcile(context.Background(), s)
		b.StartTimer()
		if err := h.a.SyncOnce(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(h.emus["apv-a"].Commands())), "requests")
	}
}

func BenchmarkIdleSyncEmulator100x5(b *testing.B) {
	s := bigState(100, 5)
	h := newHarness(b, Options{Logger: discard}, "apv-a")
	_ = h.a.Reconcile(context.Background(), s)
	if err := h.a.SyncOnce(context.Background()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := h.a.SyncOnce(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleSyncNormalizing100x5 is an idle sync against a device that
// prints every HTTP check back split over two lines: the marks are checked
// on every sync (index of the device lines by object name) and nothing is
// sent.
func BenchmarkIdleSyncNormalizing100x5(b *testing.B) {
	s := bigState(100, 5)
	for i := range s.Services {
		s.Services[i].Health = model.HealthSpec{Type: model.HealthHTTP, Path: "/healthz", Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}
	}
	h := newHarness(b, Options{Logger: discard}, "apv-a")
	h.emus["apv-a"].SetNormalize(true)
	_ = h.a.Reconcile(context.Background(), s)
	if err := h.a.SyncOnce(context.Background()); err != nil {
		b.Fatal(err)
	}
	if n := len(h.a.devices[0].marks); n != 100 {
		b.Fatalf("%d marked objects, want 100", n)
	}
	h.emus["apv-a"].ResetLog()
	for b.Loop() {
		if err := h.a.SyncOnce(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	if cmds := configCommandsIn(h.emus["apv-a"].Commands()); len(cmds) != 0 {
		b.Fatalf("idle syncs sent %d commands", len(cmds))
	}
}
