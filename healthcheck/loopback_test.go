package healthcheck

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/testreq"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// These tests probe real servers on loopback, on ports the kernel picks, so
// they run in parallel with anything else on the machine.

// httpServer serves status on a fresh loopback port and counts the
// connections it accepted; it records the Host header it saw last.
type httpServer struct {
	addr   netip.AddrPort
	conns  atomic.Int64
	status atomic.Int64
	host   atomic.Value
	srv    *http.Server
}

func startHTTP(t *testing.T, addr string, status int) *httpServer {
	t.Helper()
	s := &httpServer{}
	s.status.Store(int64(status))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = netip.MustParseAddrPort(ln.Addr().String())
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.host.Store(r.Host)
			if r.URL.Path == "/redirect" {
				http.Redirect(w, r, "/", http.StatusFound)
				return
			}
			w.WriteHeader(int(s.status.Load()))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(s.stop)
	return s
}

func (s *httpServer) stop() { _ = s.srv.Close() }

// hungServer accepts connections (the kernel completes the handshake) and
// never answers; it tracks how many are open at once.
type hungServer struct {
	addr                    netip.AddrPort
	open, maxOpen, accepted atomic.Int64
}

func startHung(t *testing.T) *hungServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := &hungServer{addr: netip.MustParseAddrPort(ln.Addr().String())}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			n := h.open.Add(1)
			for {
				m := h.maxOpen.Load()
				if n <= m || h.maxOpen.CompareAndSwap(m, n) {
					break
				}
			}
			go func() {
				defer c.Close()
				_, _ = c.Read(make([]byte, 4096)) // the request
				_, _ = c.Read(make([]byte, 1))    // until the prober closes
				h.open.Add(-1)
			}()
		}
	}()
	return h
}

var quiet = slog.New(slog.DiscardHandler)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return a
}

// probe runs one check of addr on its own engine, as the prober would.
func probe(t *testing.T, addr netip.AddrPort, h model.HealthSpec) (bool, string) {
	t.Helper()
	e, err := newEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	tg := &target{key: targetKey{addr: addr}, spec: h}
	if h.Type == model.HealthHTTP {
		tg.request = httpRequest(addr, h)
	}
	e.start(tg, time.Now())
	for {
		if d := e.take(); len(d) > 0 {
			return d[0].ok, d[0].result
		}
		dl, ok := e.nextDeadline()
		if !ok {
			t.Fatal("no result and nothing in flight")
		}
		if err := e.wait(time.Until(dl)); err != nil {
			t.Fatal(err)
		}
	}
}

func httpSpec(timeout time.Duration) model.HealthSpec {
	return model.HealthSpec{Type: model.HealthHTTP, Interval: time.Second, Timeout: timeout, Rise: 2, Fall: 3, Path: "/"}
}

func TestProbeHTTP(t *testing.T) {
	t.Parallel()
	ok200 := startHTTP(t, "127.0.0.1:0", 200)
	err500 := startHTTP(t, "127.0.0.1:0", 500)
	hung := startHung(t)
	closed := closedPort(t)

	withStatus := func(h model.HealthSpec, rs ...model.StatusRange) model.HealthSpec {
		h.ExpectedStatus = rs
		return h
	}
	withPath := func(h model.HealthSpec, p string) model.HealthSpec { h.Path = p; return h }
	spec := httpSpec(300 * time.Millisecond)
	cases := []struct {
		name   string
		addr   netip.AddrPort
		spec   model.HealthSpec
		ok     bool
		result string
	}{
		{"200 is healthy", ok200.addr, spec, true, "ok"},
		{"500 is unhealthy", err500.addr, spec, false, "HTTP 500, expected 200-399"},
		{"500 accepted when expected", err500.addr, withStatus(spec, model.StatusRange{Min: 500, Max: 599}), true, "ok"},
		{"200 refused when only 204 expected", ok200.addr, withStatus(spec, model.StatusRange{Min: 204, Max: 204}), false, "HTTP 200, expected 204"},
		{"redirect not followed", ok200.addr, withStatus(withPath(spec, "/redirect"), model.StatusRange{Min: 200, Max: 200}), false, "HTTP 302, expected 200"},
		{"hung server times out", hung.addr, spec, false, "timeout after 300ms"},
		{"closed port", closed, spec, false, "connect: connection refused"},
	}
	for _, c := range cases {
		start := time.Now()
		ok, res := probe(t, c.addr, c.spec)
		if ok != c.ok || res != c.result {
			t.Errorf("%s: got %v %q, want %v %q", c.name, ok, res, c.ok, c.result)
		}
		if took := time.Since(start); took > c.spec.Timeout+time.Second {
			t.Errorf("%s: probe took %v, timeout is %v", c.name, took, c.spec.Timeout)
		}
	}
}

func TestProbeHTTPHostAndFreshConnections(t *testing.T) {
	t.Parallel()
	s := startHTTP(t, "127.0.0.1:0", 200)
	spec := httpSpec(time.Second)
	for range 3 {
		if ok, res := probe(t, s.addr, spec); !ok {
			t.Fatalf("probe: %s", res)
		}
	}
	if got := s.conns.Load(); got != 3 {
		t.Errorf("3 probes used %d connections, want 3 (no keep-alive reuse)", got)
	}
	if got := s.host.Load(); got != s.addr.String() {
		t.Errorf("default Host header %q, want %q", got, s.addr)
	}
	spec.Host = "shop.example.com"
	if ok, res := probe(t, s.addr, spec); !ok {
		t.Fatalf("probe: %s", res)
	}
	if got := s.host.Load(); got != "shop.example.com" {
		t.Errorf("Host header %q, want shop.example.com", got)
	}
}

func TestProbeTCP(t *testing.T) {
	t.Parallel()
	s := startHTTP(t, "127.0.0.1:0", 500) // a TCP check ignores what the server says
	spec := model.HealthSpec{Type: model.HealthTCP, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}
	if ok, res := probe(t, s.addr, spec); !ok || res != "ok" {
		t.Errorf("open port: %v %q", ok, res)
	}
	if ok, res := probe(t, closedPort(t), spec); ok || res != "connect: connection refused" {
		t.Errorf("closed port: %v %q", ok, res)
	}
}

// verdicts runs p.Apply(s) and returns each real's Healthy by endpoint.
func verdicts(p *Prober, s model.State) map[string]bool {
	out := map[string]bool{}
	for _, vs := range p.Apply(s).Services {
		for _, r := range vs.Reals {
			out[vs.Key()+" "+r.Endpoint().String()] = r.Healthy
		}
	}
	return out
}

func oneVS(name string, h model.HealthSpec, addrs ...netip.AddrPort) model.VirtualService {
	vs := model.VirtualService{Namespace: "ns", Route: name, VIP: netip.MustParseAddr("10.200.0.1"), Port: 80, Protocol: model.TCP, Health: h}
	for _, a := range addrs {
		vs.Reals = append(vs.Reals, model.Real{IP: a.Addr(), Port: a.Port(), Weight: 1, Healthy: true})
	}
	return vs
}

// runProber starts p.Run until the test ends and returns a channel that
// receives on every verdict change.
func runProber(t *testing.T, p *Prober) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return changed
}

// TestProberFollowsServer stops and restarts a real's server and checks the
// verdict goes down after fall failures and comes back after rise successes.
func TestProberFollowsServer(t *testing.T) {
	t.Parallel()
	for _, typ := range []model.HealthType{model.HealthHTTP, model.HealthTCP} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			const interval, timeout = 100 * time.Millisecond, 50 * time.Millisecond
			const rise, fall = 2, 3
			h := model.HealthSpec{Type: typ, Interval: interval, Timeout: timeout, Rise: rise, Fall: fall, Path: "/"}
			srv := startHTTP(t, "127.0.0.1:0", 200)
			other := startHTTP(t, "127.0.0.1:0", 200)
			reg := prometheus.NewRegistry()
			p := New(Options{Registerer: reg, Logger: quiet})
			s := model.State{Services: []model.VirtualService{oneVS("web", h, srv.addr, other.addr)}}
			key := func(a netip.AddrPort) string { return "ns/web/TCP/80 " + a.String() }
			p.Apply(s)
			changed := runProber(t, p)

			poll.Until(t, 2*time.Second, "first probe", func() (bool, string) {
				res, _ := p.RealStatus("ns/web/TCP/80", s.Services[0].Reals[0])
				return res == "ok", res
			})
			if v := verdicts(p, s); !v[key(srv.addr)] || !v[key(other.addr)] {
				t.Fatalf("verdicts %v, want both healthy", v)
			}

			srv.stop()
			stopped := time.Now()
			// Bound: fall probes at most one interval apart, the last one
			// taking up to the timeout; slack for a loaded machine.
			poll.Until(t, fall*interval+timeout+time.Second, "down after the server stopped", func() (bool, string) {
				v := verdicts(p, s)
				return !v[key(srv.addr)], fmt.Sprint(v)
			})
			if took := time.Since(stopped); took < (fall-1)*interval {
				t.Errorf("down %v after stop: faster than %d failures %v apart allow", took, fall, interval)
			}
			if !verdicts(p, s)[key(other.addr)] {
				t.Error("the other real went down too")
			}
			select {
			case <-changed:
			default:
				t.Error("verdict changed without calling changed")
			}
			res, since := p.RealStatus("ns/web/TCP/80", s.Services[0].Reals[0])
			if res != "connect: connection refused" || time.Since(since) > time.Second {
				t.Errorf("RealStatus %q since %v, want the refused connect and the time it went down", res, since)
			}
			if got := testutil.ToFloat64(upGauge(t, reg, "ns/web/TCP/80", srv.addr.String())); got != 0 {
				t.Errorf("edgeagent_real_server_up = %v, want 0", got)
			}

			startHTTP(t, srv.addr.String(), 200)
			restarted := time.Now()
			poll.Until(t, rise*interval+timeout+time.Second, "up after the server returned", func() (bool, string) {
				v := verdicts(p, s)
				return v[key(srv.addr)], fmt.Sprint(v)
			})
			if took := time.Since(restarted); took < (rise-1)*interval {
				t.Errorf("up %v after restart: faster than %d successes %v apart allow", took, rise, interval)
			}
		})
	}
}

// upGauge finds the edgeagent_real_server_up series of (vs, real).
func upGauge(t *testing.T, reg *prometheus.Registry, vs, real string) prometheus.Collector {
	t.Helper()
	return prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "edgeagent_real_server_up" {
				continue
			}
			for _, m := range mf.Metric {
				l := map[string]string{}
				for _, lp := range m.Label {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["vs"] == vs && l["real"] == real {
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("x", "x", nil, nil), prometheus.GaugeValue, m.GetGauge().GetValue())
					return
				}
			}
		}
		t.Fatalf("no edgeagent_real_server_up{vs=%q,real=%q}", vs, real)
	})
}

// TestProberProbesSharedRealOnce puts one real behind two virtual services
// with the same check and counts the connections it receives.
func TestProberProbesSharedRealOnce(t *testing.T) {
	t.Parallel()
	const interval = 50 * time.Millisecond
	h := model.HealthSpec{Type: model.HealthTCP, Interval: interval, Timeout: 40 * time.Millisecond, Rise: 1, Fall: 1}
	srv := startHTTP(t, "127.0.0.1:0", 200)
	a, b := oneVS("a", h, srv.addr), oneVS("b", h, srv.addr)
	b.Port = 81
	p := New(Options{Logger: quiet})
	p.Apply(model.State{Services: []model.VirtualService{a, b}})
	runProber(t, p)
	const window = time.Second
	time.Sleep(window)
	// One target: about window/interval = 20 probes; two would be 40.
	if got := srv.conns.Load(); got < 10 || got > 30 {
		t.Fatalf("%d probes in %v at %v, want about %d (probed once, not once per virtual service)", got, window, interval, window/interval)
	}
}

// TestProberBoundsConcurrency gives a prober with concurrency 3 ten reals on
// a server that never answers and checks at most 3 probes are open at once.
func TestProberBoundsConcurrency(t *testing.T) {
	t.Parallel()
	hung := startHung(t)
	h := model.HealthSpec{Type: model.HealthHTTP, Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond, Rise: 1, Fall: 1, Path: "/"}
	var vss []model.VirtualService
	for i := range 10 {
		vs := oneVS("r", h, hung.addr)
		vs.Port = uint16(100 + i)
		vs.Health.Path = "/" + strings.Repeat("x", i) // ten distinct checks of one address
		vss = append(vss, vs)
	}
	p := New(Options{Concurrency: 3, Logger: quiet})
	p.Apply(model.State{Services: vss})
	runProber(t, p)
	const window = time.Second
	time.Sleep(window)
	// Each probe holds its slot for the whole timeout, so 3 slots start at
	// most 3 probes per timeout; unbounded, 10 reals would make 50.
	limit := 3 * (int64(window/h.Timeout) + 1)
	if got := hung.accepted.Load(); got > limit {
		t.Errorf("%d probes started in %v, want at most %d with 3 slots", got, window, limit)
	}
	// The server sees a probe's close a little after the prober has
	// freed its slot and started the next one, so its count of open
	// connections is only a lower bound check: the bound must be reached.
	if got := hung.maxOpen.Load(); got < 3 {
		t.Errorf("at most %d probes open at once, want the bound of 3 reached with 10 hung reals", got)
	}
}

// TestProberStopsPromptly cancels Run while probes hang and checks it returns
// well before their timeout.
func TestProberStopsPromptly(t *testing.T) {
	t.Parallel()
	hung := startHung(t)
	// A short interval so the first probe starts soon; it then hangs for
	// its 10 s timeout.
	h := model.HealthSpec{Type: model.HealthHTTP, Interval: 200 * time.Millisecond, Timeout: 10 * time.Second, Rise: 1, Fall: 1, Path: "/"}
	p := New(Options{Logger: quiet})
	p.Apply(model.State{Services: []model.VirtualService{oneVS("a", h, hung.addr)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx, func() {}); close(done) }()
	poll.Until(t, 2*time.Second, "probe open", func() (bool, string) { return hung.open.Load() > 0, "" })
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run still running 2s after cancel with a 10s probe in flight")
	}
	if res, _ := p.RealStatus("ns/a/TCP/80", oneVS("a", h, hung.addr).Reals[0]); res != "pending: not probed yet" {
		t.Errorf("a cancelled probe was recorded: %q", res)
	}
}

// TestGaugesFollowState checks the per-real and per-VS series and that they
// go when their virtual service or real leaves.
func TestGaugesFollowState(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	p := New(Options{Registerer: reg, Logger: quiet})
	a1 := netip.MustParseAddrPort("10.244.0.1:80")
	a2 := netip.MustParseAddrPort("10.244.0.2:80")
	web := oneVS("web", model.DefaultHealth, a1, a2)
	web.Reals[1].Terminating = true
	api := oneVS("api", model.HealthSpec{Type: model.HealthNone}, a1)
	p.Apply(model.State{Services: []model.VirtualService{web, api}})
	want := `
# HELP edgeagent_virtual_service_healthy_reals Reals of the virtual service that may take new connections (healthy and not terminating).
# TYPE edgeagent_virtual_service_healthy_reals gauge
edgeagent_virtual_service_healthy_reals{vs="ns/api/TCP/80"} 1
edgeagent_virtual_service_healthy_reals{vs="ns/web/TCP/80"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "edgeagent_virtual_service_healthy_reals"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount((*gauges)(p), "edgeagent_real_server_up"); n != 3 {
		t.Errorf("%d real_server_up series, want 3", n)
	}
	web.Reals = web.Reals[:1]
	p.Apply(model.State{Services: []model.VirtualService{web}})
	want = `
# HELP edgeagent_real_server_up 1 when the real passes its health check (or has none), 0 when it failed it.
# TYPE edgeagent_real_server_up gauge
edgeagent_real_server_up{real="10.244.0.1:80",vs="ns/web/TCP/80"} 1
# HELP edgeagent_virtual_service_healthy_reals Reals of the virtual service that may take new connections (healthy and not terminating).
# TYPE edgeagent_virtual_service_healthy_reals gauge
edgeagent_virtual_service_healthy_reals{vs="ns/web/TCP/80"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "edgeagent_real_server_up", "edgeagent_virtual_service_healthy_reals"); err != nil {
		t.Error(err)
	}
	probs, err := testutil.GatherAndLint(reg)
	if err != nil || len(probs) > 0 {
		t.Errorf("metric lint: %v %v", err, probs)
	}
}

// TestProbesLeaveNoTimeWait checks that probes close with RST: neither the
// node nor the real keeps a TIME_WAIT socket per probe.
func TestProbesLeaveNoTimeWait(t *testing.T) {
	t.Parallel()
	s := startHTTP(t, "127.0.0.1:0", 200)
	for _, h := range []model.HealthSpec{{Type: model.HealthTCP, Timeout: time.Second}, httpSpec(time.Second)} {
		for range 5 {
			if ok, res := probe(t, s.addr, h); !ok {
				t.Fatalf("%s probe: %s", h.Type, res)
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // let the server see the resets
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		testreq.Missing(t, "cannot read /proc/net/tcp: %v", err)
	}
	port := fmt.Sprintf(":%04X", s.addr.Port())
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && (strings.HasSuffix(f[1], port) || strings.HasSuffix(f[2], port)) && f[3] == "06" {
			t.Fatalf("TIME_WAIT socket left by a probe: %s", line)
		}
	}
}

func TestProbeIPv6(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		testreq.Missing(t, "no IPv6 loopback here: %v", err)
	}
	ln.Close()
	s := startHTTP(t, "[::1]:0", 200)
	for _, h := range []model.HealthSpec{{Type: model.HealthTCP, Timeout: time.Second}, httpSpec(time.Second)} {
		if ok, res := probe(t, s.addr, h); !ok {
			t.Errorf("%s probe of %s: %s", h.Type, s.addr, res)
		}
	}
	if got := s.host.Load(); got != s.addr.String() {
		t.Errorf("Host header %q, want %q", got, s.addr)
	}
}
