package bgp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/internal/racecheck"
	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/model"
)

// Real-peer tests run the speaker in its own process inside the edge
// namespace: GoBGP's goroutines must never run in a test process that
// switches namespaces. The test binary re-executes itself under
// `ip netns exec` with speakerdEnv set, and drives that copy (speakerd)
// with JSON lines on stdin/stdout.

const speakerdEnv = "EDGEAGENT_BGP_SPEAKERD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(speakerdEnv); spec != "" {
		os.Exit(speakerdMain(spec))
	}
	os.Exit(m.Run())
}

type speakerdSpec struct {
	Config Config `json:"config"`
	Peers  []Peer `json:"peers"`
}

type speakerdReq struct {
	Op       string           `json:"op"`
	Routes   []model.VIPRoute `json:"routes,omitempty"`
	Peers    []Peer           `json:"peers,omitempty"`
	Withdraw bool             `json:"withdraw,omitempty"`
}

type speakerdResp struct {
	Error      string          `json:"error,omitempty"`
	Neighbors  []Neighbor      `json:"neighbors,omitempty"`
	Learned    []LearnedRoute  `json:"learned,omitempty"`
	Advertised map[string]bool `json:"advertised,omitempty"`
	Metrics    string          `json:"metrics,omitempty"`
	Elapsed    time.Duration   `json:"elapsed,omitempty"`
	// HeapInuse is runtime.MemStats.HeapInuse after a GC ("memstats").
	HeapInuse uint64 `json:"heapInuse,omitempty"`
}

func speakerdMain(spec string) int {
	var sp speakerdSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		fmt.Fprintln(os.Stderr, "speakerd spec:", err)
		return 2
	}
	lg := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	s, err := New(sp.Config, Options{Routes: dataplane.NewRouteTable(nil, 0), Registerer: reg, Logger: lg})
	if err != nil {
		fmt.Fprintln(os.Stderr, "speakerd new:", err)
		return 2
	}
	ctx := context.Background()
	if err := s.Start(ctx, sp.Peers); err != nil {
		fmt.Fprintln(os.Stderr, "speakerd start:", err)
		return 2
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	enc := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req speakerdReq
		var resp speakerdResp
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			resp.Error = err.Error()
			_ = enc.Encode(resp)
			continue
		}
		start := time.Now()
		var err error
		switch req.Op {
		case "announce":
			err = s.Announce(ctx, req.Routes)
		case "peers":
			err = s.SetPeers(ctx, req.Peers)
		case "neighbors":
			resp.Neighbors = s.Neighbors()
		case "learned":
			resp.Learned = s.Learned()
		case "advertised":
			resp.Advertised = s.Advertised()
		case "metrics":
			mfs, gerr := reg.Gather()
			err = gerr
			var b bytes.Buffer
			for _, mf := range mfs {
				_, _ = expfmt.MetricFamilyToText(&b, mf)
			}
			resp.Metrics = b.String()
		case "memstats":
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			resp.HeapInuse = ms.HeapInuse
		case "stop":
			err = s.Stop(ctx, req.Withdraw)
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		resp.Elapsed = time.Since(start)
		if err != nil {
			resp.Error = err.Error()
		}
		_ = enc.Encode(resp)
		if req.Op == "stop" {
			return 0
		}
	}
	return 0
}

// speakerd is a running speaker process driven by a test.
type speakerd struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
	mu     sync.Mutex
	stderr *lockedBuffer
	done   chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSpeakerd runs the speaker in namespace ns of bed.
func startSpeakerd(t testing.TB, bed *testbed.Bed, cfg Config, peers []Peer) *speakerd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(speakerdSpec{Config: cfg, Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	cmd := bed.Command("edge", exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), speakerdEnv+"="+string(spec))
	d := &speakerd{t: t, cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	d.stdin, err = cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.out = bufio.NewScanner(stdout)
	d.out.Buffer(make([]byte, 1<<20), 64<<20)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.kill()
		if races := racecheck.Unexpected(d.stderr.String()); len(races) > 0 {
			t.Errorf("the race detector reported a data race in speakerd:\n%s", races[0])
		}
		if t.Failed() {
			log := d.stderr.String()
			if len(log) > 20000 {
				log = log[len(log)-20000:]
			}
			t.Logf("--- speakerd log (tail)\n%s", log)
		}
	})
	return d
}

func (d *speakerd) call(req speakerdReq) speakerdResp {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := d.stdin.Write(append(b, '\n')); err != nil {
		d.t.Fatalf("speakerd %s: %v\n%s", req.Op, err, d.stderr.String())
	}
	if !d.out.Scan() {
		d.t.Fatalf("speakerd %s: no answer (%v)\n%s", req.Op, d.out.Err(), d.stderr.String())
	}
	var resp speakerdResp
	if err := json.Unmarshal(d.out.Bytes(), &resp); err != nil {
		d.t.Fatal(err)
	}
	return resp
}

func (d *speakerd) announce(routes ...model.VIPRoute) speakerdResp {
	d.t.Helper()
	r := d.call(speakerdReq{Op: "announce", Routes: routes})
	if r.Error != "" {
		d.t.Fatalf("announce: %s", r.Error)
	}
	return r
}

func (d *speakerd) neighbor(addr string) Neighbor {
	d.t.Helper()
	for _, n := range d.call(speakerdReq{Op: "neighbors"}).Neighbors {
		if n.Address.String() == addr {
			return n
		}
	}
	return Neighbor{}
}

// kill ends the process with SIGKILL (what `kill -9` does to an agent).
func (d *speakerd) kill() {
	if d.cmd.Process != nil {
		_ = d.cmd.Process.Kill()
	}
	<-d.done
}

func vip(s string) model.VIPRoute {
	return model.VIPRoute{Prefix: mustPrefix(s + "/32")}
}

func waitEstablished(t testing.TB, d *speakerd, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		poll.Until(t, 20*time.Second, "session with "+a+" established", func() (bool, string) {
			n := d.neighbor(a)
			return n.State == "established", fmt.Sprintf("%+v", n)
		})
	}
}
