package healthcheck

import (
	"container/heap"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/model"
)

// TestFirstDelaySpread checks that 10,000 reals added at once start their
// probes spread evenly over the interval rather than in lockstep.
func TestFirstDelaySpread(t *testing.T) {
	const n, buckets = 10000, 20
	interval := 5 * time.Second
	seed := maphash.MakeSeed()
	sk := specKey(model.DefaultHealth)
	var count [buckets]int
	for i := range n {
		ip := netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})
		d := firstDelay(seed, targetKey{addr: netip.AddrPortFrom(ip, 8080), spec: sk}, interval)
		if d < 0 || d >= interval {
			t.Fatalf("delay %v outside [0, %v)", d, interval)
		}
		count[int(d*buckets/interval)]++
	}
	// Uniform: 500 per bucket; allow ±25 % (about 5.6 standard deviations).
	for i, c := range count {
		if c < n/buckets*3/4 || c > n/buckets*5/4 {
			t.Fatalf("bucket %d of %d holds %d first probes, want about %d: %v", i, buckets, c, n/buckets, count)
		}
	}
	if firstDelay(seed, targetKey{}, 0) != 0 {
		t.Fatal("zero interval must give zero delay")
	}
}

func TestAdvanceKeepsPhase(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	iv := 5 * time.Second
	cases := []struct {
		next, now, want time.Duration
	}{
		{0, 0, 5 * time.Second},
		{0, time.Second, 5 * time.Second},
		{2 * time.Second, 2 * time.Second, 7 * time.Second},
		{2 * time.Second, 23 * time.Second, 27 * time.Second}, // stalled: skip missed rounds
		{9 * time.Second, 3 * time.Second, 9 * time.Second},   // not due: unchanged
	}
	for _, c := range cases {
		if got := advance(t0.Add(c.next), t0.Add(c.now), iv).Sub(t0); got != c.want {
			t.Errorf("advance(next %v, now %v) = %v, want %v", c.next, c.now, got, c.want)
		}
	}
}

func TestSpecKeyDistinguishesChecks(t *testing.T) {
	base := model.HealthSpec{Type: model.HealthHTTP, Interval: time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Path: "/"}
	variants := []func(*model.HealthSpec){
		func(h *model.HealthSpec) { h.Type = model.HealthTCP },
		func(h *model.HealthSpec) { h.Interval = 2 * time.Second },
		func(h *model.HealthSpec) { h.Timeout = 2 * time.Second },
		func(h *model.HealthSpec) { h.Rise = 1 },
		func(h *model.HealthSpec) { h.Fall = 1 },
		func(h *model.HealthSpec) { h.Path = "/healthz" },
		func(h *model.HealthSpec) { h.Host = "example.com" },
		func(h *model.HealthSpec) { h.ExpectedStatus = []model.StatusRange{{Min: 200, Max: 200}} },
	}
	seen := map[string]int{specKey(base): -1}
	for i, f := range variants {
		h := base
		f(&h)
		k := specKey(h)
		if j, dup := seen[k]; dup {
			t.Errorf("variant %d has the same key as %d: %s", i, j, k)
		}
		seen[k] = i
	}
	if a, b := specKey(base), specKey(base); a != b {
		t.Errorf("key not deterministic: %q then %q", a, b)
	}
}

// TestApplyDedupes checks that a real shared by several virtual services is
// one target per distinct check, and that targets of reals that left go.
func TestApplyDedupes(t *testing.T) {
	p := New(Options{})
	tcp := model.DefaultHealth
	http := model.HealthSpec{Type: model.HealthHTTP, Interval: 5 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Path: "/"}
	none := model.HealthSpec{Type: model.HealthNone}
	real := func(ip string) model.Real {
		return model.Real{IP: netip.MustParseAddr(ip), Port: 8080, Weight: 1, Healthy: true}
	}
	vs := func(name string, port uint16, h model.HealthSpec, reals ...model.Real) model.VirtualService {
		return model.VirtualService{Namespace: "ns", Route: name, VIP: netip.MustParseAddr("10.200.0.1"), Port: port, Protocol: model.TCP, Health: h, Reals: reals}
	}
	s := model.State{Services: []model.VirtualService{
		vs("a", 80, tcp, real("10.244.0.1"), real("10.244.0.2")),
		vs("b", 81, tcp, real("10.244.0.1")),                      // same real, same check
		vs("c", 82, http, real("10.244.0.1")),                     // same real, other check
		vs("d", 83, none, real("10.244.0.1"), real("10.244.0.3")), // not probed
	}}
	out := p.Apply(s)
	if got := len(p.targets); got != 3 {
		t.Fatalf("%d targets, want 3 (0.1 TCP, 0.2 TCP, 0.1 HTTP): %v", got, keys(p))
	}
	if len(p.queue) != 3 {
		t.Fatalf("queue holds %d, want 3", len(p.queue))
	}
	for _, vs := range out.Services {
		for _, r := range vs.Reals {
			if !r.Healthy {
				t.Fatalf("%s %s not presumed healthy before any probe", vs.Key(), r.Endpoint())
			}
		}
	}
	if res, _ := p.RealStatus("ns/d/TCP/83", real("10.244.0.3")); res != "" {
		t.Errorf("None check reports %q, want nothing", res)
	}
	if res, since := p.RealStatus("ns/a/TCP/80", real("10.244.0.2")); res == "" || since.IsZero() {
		t.Errorf("probed real reports %q since %v, want pending and a time", res, since)
	}

	// b and c go, a loses 0.2: only 0.1 TCP remains.
	p.Apply(model.State{Services: []model.VirtualService{vs("a", 80, tcp, real("10.244.0.1"))}})
	if len(p.targets) != 1 || len(p.queue) != 1 {
		t.Fatalf("after removal: %d targets, queue %d, want 1: %v", len(p.targets), len(p.queue), keys(p))
	}
	for i, q := range p.queue {
		if q.index != i {
			t.Fatalf("queue index %d holds index %d", i, q.index)
		}
	}
}

// TestApplyKeepsVerdicts checks that Apply reports the probes' verdict,
// leaves the caller's state alone, and copies only the reals a verdict
// changes.
func TestApplyKeepsVerdicts(t *testing.T) {
	p := New(Options{})
	real := func(ip string) model.Real {
		return model.Real{IP: netip.MustParseAddr(ip), Port: 80, Weight: 1, Healthy: true}
	}
	s := model.State{Services: []model.VirtualService{
		{Namespace: "ns", Route: "a", Port: 80, Protocol: model.TCP, Health: model.DefaultHealth, Reals: []model.Real{real("10.244.0.1"), real("10.244.0.2")}},
		{Namespace: "ns", Route: "b", Port: 80, Protocol: model.TCP, Health: model.DefaultHealth, Reals: []model.Real{real("10.244.0.3")}},
	}}
	p.Apply(s)
	for k, tg := range p.targets {
		if k.addr.Addr() == netip.MustParseAddr("10.244.0.2") {
			tg.verdict = Verdict{Healthy: false}
		}
	}
	out := p.Apply(s)
	a, b := out.Services[0].Reals, out.Services[1].Reals
	if !a[0].Healthy || a[1].Healthy {
		t.Fatalf("a's reals %+v, want 0.1 healthy and 0.2 down (its verdict)", a)
	}
	if !s.Services[0].Reals[1].Healthy {
		t.Fatal("Apply modified its input")
	}
	if !b[0].Healthy || &b[0] != &s.Services[1].Reals[0] {
		t.Fatalf("b's reals %+v copied or changed, want the input's own (no verdict changed them)", b)
	}
	out.Services[0].Route = "changed"
	if s.Services[0].Route != "a" {
		t.Fatal("Apply's services share the input's array")
	}
}

func keys(p *Prober) []string {
	var out []string
	for k := range p.targets {
		out = append(out, fmt.Sprintf("%s %s", k.addr, k.spec))
	}
	return out
}

// TestNextDueBatches checks that one wake-up starts every probe due within
// the early window and that a probe in flight skips its round.
func TestNextDueBatches(t *testing.T) {
	p := New(Options{})
	t0 := time.Now()
	h := model.HealthSpec{Type: model.HealthTCP, Interval: 5 * time.Second, Timeout: time.Second, Rise: 1, Fall: 1}
	offsets := []time.Duration{0, 10 * time.Millisecond, 49 * time.Millisecond, 51 * time.Millisecond, time.Second}
	for i, off := range offsets {
		k := targetKey{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 80), spec: specKey(h)}
		tg := &target{key: k, spec: h, next: t0.Add(off), verdict: NewVerdict()}
		p.targets[k] = tg
		heap.Push(&p.queue, tg)
	}
	var got []time.Duration
	var wait time.Duration
	for {
		tg, w := p.nextDue(t0)
		if tg == nil {
			wait = w
			break
		}
		got = append(got, tg.next.Sub(t0)-h.Interval)
	}
	if want := offsets[:3]; !slices.Equal(got, want) {
		t.Fatalf("started %v at once, want %v (due within %v)", got, want, dispatchQuantum)
	}
	if wait != 51*time.Millisecond {
		t.Fatalf("wait %v, want 51ms (until the next probe is due)", wait)
	}
	// All started are in flight: when due again they are skipped, not doubled.
	tg, _ := p.nextDue(t0.Add(h.Interval))
	if tg == nil || tg.next.Sub(t0) != 51*time.Millisecond+h.Interval {
		t.Fatalf("after an interval got %v, want the 51ms target (the others are still in flight)", tg)
	}
	if earlyBy(100*time.Millisecond) != 10*time.Millisecond {
		t.Fatal("a short interval must not let probes start more than a tenth early")
	}
}
