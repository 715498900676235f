package healthcheck

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/model"
	"github.com/prometheus/client_golang/prometheus"
)

// The CPU benchmark probes 10,000 loopback listeners every 5 s and measures
// the prober process's CPU time with getrusage. The listeners live in a
// child process (this test binary re-run in server mode) so that accepting
// and answering the probes is not counted against the prober.
//
//	go test ./healthcheck -run '^$' -bench ProberCPU -benchtime 1x
//
// EDGEAGENT_BENCH_REALS (default 10000) and EDGEAGENT_BENCH_SECONDS (default
// 30) change the size and the measured window.
//
// On loopback the kernel runs both ends' TCP processing inside the
// prober's own connect and close calls, so the figure includes the servers'
// half. hack/bench/healthcheck.sh instead runs the prober and the servers in
// two network namespaces joined by a veth pair with threaded NAPI (set
// EDGEAGENT_BENCH_SERVER_NETNS and EDGEAGENT_BENCH_SERVER_ADDR), so that
// receive processing runs in kernel threads as a NIC's would in softirq,
// and the prober is charged for its own half only.

const serverModeEnv = "EDGEAGENT_HEALTHCHECK_BENCH_SERVER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(serverModeEnv); mode != "" {
		benchServer(mode)
		return
	}
	os.Exit(m.Run())
}

// benchServer listens on N loopback ports, prints them on one line and serves
// until its stdin closes (the benchmark ended or died).
func benchServer(mode string) {
	n, _ := strconv.Atoi(os.Getenv("EDGEAGENT_BENCH_REALS"))
	ports := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(benchAddr().String(), "0"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			os.Exit(1)
		}
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					if mode == "http" {
						buf := make([]byte, 1024)
						_, _ = c.Read(buf)
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					}
					_, _ = c.Read(make([]byte, 1)) // until the prober closes
				}()
			}
		}()
	}
	fmt.Println(strings.Join(ports, " "))
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// benchAddr is where the benchmark's servers listen.
func benchAddr() netip.Addr {
	if a, err := netip.ParseAddr(os.Getenv("EDGEAGENT_BENCH_SERVER_ADDR")); err == nil {
		return a
	}
	return netip.MustParseAddr("127.0.0.1")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// contextSwitches sums the voluntary and involuntary context switches of
// this process's threads.
func contextSwitches() int {
	n := 0
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		data, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasSuffix(strings.Fields(l + " x")[0], "ctxt_switches:") {
				v, _ := strconv.Atoi(strings.Fields(l)[1])
				n += v
			}
		}
	}
	return n
}

// cpuTime returns this process's user and system CPU time.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func BenchmarkProberCPU(b *testing.B) {
	for _, typ := range []model.HealthType{model.HealthTCP, model.HealthHTTP} {
		b.Run(string(typ), func(b *testing.B) { benchProberCPU(b, typ) })
	}
}

func benchProberCPU(b *testing.B, typ model.HealthType) {
	reals := envInt("EDGEAGENT_BENCH_REALS", 10000)
	window := time.Duration(envInt("EDGEAGENT_BENCH_SECONDS", 30)) * time.Second
	const interval = 5 * time.Second

	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	srv := exec.Command(exe)
	if ns := os.Getenv("EDGEAGENT_BENCH_SERVER_NETNS"); ns != "" {
		srv = exec.Command("ip", "netns", "exec", ns, exe)
	}
	srv.Env = append(os.Environ(), serverModeEnv+"="+strings.ToLower(string(typ)), fmt.Sprintf("EDGEAGENT_BENCH_REALS=%d", reals))
	srv.Stderr = os.Stderr
	stdin, err := srv.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := srv.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = srv.Wait() }()
	line, err := bufio.NewReaderSize(out, 1<<20).ReadString('\n')
	if err != nil {
		b.Fatalf("server: %v", err)
	}
	ports := strings.Fields(line)
	if len(ports) != reals {
		b.Fatalf("server listens on %d ports, want %d", len(ports), reals)
	}

	// 100 virtual services of reals/100 reals each.
	h := model.HealthSpec{Type: typ, Interval: interval, Timeout: 2 * time.Second, Rise: 2, Fall: 3, Path: "/healthz"}
	var s model.State
	for i, port := range ports {
		if i%100 == 0 {
			s.Services = append(s.Services, model.VirtualService{Namespace: "bench", Route: fmt.Sprintf("r%d", i/100),
				VIP: netip.MustParseAddr("10.200.0.1"), Port: uint16(i / 100), Protocol: model.TCP, Health: h})
		}
		p, _ := strconv.Atoi(port)
		vs := &s.Services[len(s.Services)-1]
		vs.Reals = append(vs.Reals, model.Real{IP: benchAddr(), Port: uint16(p), Weight: 1, Healthy: true})
	}

	reg := prometheus.NewRegistry()
	p := New(Options{Concurrency: 256, Registerer: reg, Logger: quiet})
	applyStart := time.Now()
	p.Apply(s)
	applyFirst := time.Since(applyStart)
	applyStart = time.Now()
	p.Apply(s)
	applyAgain := time.Since(applyStart)

	ctx := b.Context()
	done := make(chan struct{})
	go func() { p.Run(ctx, func() {}); close(done) }()

	// The first interval is the jittered ramp-up; measure the steady state
	// after it.
	time.Sleep(interval)
	count0, fail0 := probeCounts(b, reg)
	user0, sys0 := cpuTime()
	cs0 := contextSwitches()
	wall0 := time.Now()
	b.ResetTimer()
	time.Sleep(window)
	user1, sys1 := cpuTime()
	cs := contextSwitches() - cs0
	wall := time.Since(wall0)
	user, sys := user1-user0, sys1-sys0
	cpu := user + sys
	b.StopTimer()
	count, fail := probeCounts(b, reg)
	count, fail = count-count0, fail-fail0

	down := 0
	for _, vs := range p.Apply(s).Services {
		for _, r := range vs.Reals {
			if !r.Healthy {
				down++
			}
		}
	}
	pct := 100 * cpu.Seconds() / wall.Seconds()
	b.ReportMetric(pct, "%cpu")
	b.ReportMetric(float64(count)/wall.Seconds(), "probes/s")
	b.ReportMetric(float64(cs)/wall.Seconds(), "ctxsw/s")
	b.ReportMetric(float64(applyFirst.Microseconds())/1000, "ms/apply-first")
	b.ReportMetric(float64(applyAgain.Microseconds())/1000, "ms/apply-again")
	b.Logf("%s to %s: %d reals every %v for %v: %d probes (%d failed), %v CPU (user %v, system %v) = %.2f%% of one core, %d context switches/s; %d reals down at the end; Apply of 10k reals %v first, %v again",
		typ, benchAddr(), reals, interval, wall.Round(time.Millisecond), count, fail, cpu.Round(time.Millisecond), user.Round(time.Millisecond), sys.Round(time.Millisecond), pct, int(float64(cs)/wall.Seconds()), down, applyFirst, applyAgain)
	if fail > 0 || down > 0 {
		b.Errorf("%d probes failed, %d reals down: the numbers measure failures, not probes", fail, down)
	}
}

// probeCounts returns the probes recorded by the duration histogram, all and
// failed.
func probeCounts(b *testing.B, reg *prometheus.Registry) (all, failed uint64) {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "edgeagent_healthcheck_duration_seconds" {
			continue
		}
		for _, m := range mf.Metric {
			n := m.GetHistogram().GetSampleCount()
			all += n
			for _, l := range m.Label {
				if l.GetName() == "result" && l.GetValue() == "fail" {
					failed += n
				}
			}
		}
	}
	return all, failed
}
