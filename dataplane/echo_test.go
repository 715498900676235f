package dataplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/model"
)

// The test binary doubles as the traffic helper it runs inside namespaces
// (`ip netns exec NS <test binary>` with EDGE_TEST_ROLE set), so kernel tests
// need no external tools and the test process never changes namespace.
//
// serve: answers every TCP connection and UDP datagram on EDGE_PORT with
// "<EDGE_NAME> <peer address>\n" — the real's name, and the source address
// it saw (tells masquerading from not).
// probe: makes EDGE_N new connections (TCP) or new sockets (UDP) to
// EDGE_ADDR, cycling through the source addresses in EDGE_SRCS, and prints
// one JSON result per request.
func TestMain(m *testing.M) {
	switch os.Getenv("EDGE_TEST_ROLE") {
	case "serve":
		serve()
		return
	case "probe":
		probe()
		return
	case "hold":
		hold()
		return
	case "prepare":
		prepare()
		return
	case "sync":
		syncHere()
		return
	}
	os.Exit(m.Run())
}

// prepare runs PrepareNode (IPv4 and IPv6) in the helper's namespace and
// prints what it found: name=value per sysctl.
func prepare() {
	before, err := PrepareNode(context.Background(), true)
	for k, v := range before {
		fmt.Printf("%s=%s\n", k, v)
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
}

// syncHere runs a Dataplane the way the agent binary does, in its own
// namespace without a command prefix, syncs one service and prints the
// log (JSON lines) and then the status and Programmed as one JSON object.
func syncHere() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	d := New(Options{Masquerade: true, Logger: log})
	vs := model.VirtualService{Namespace: "h", Route: "web", VIP: netip.MustParseAddr("10.200.0.1"), Port: 80,
		Protocol: model.TCP, Policy: model.RoundRobin, Reals: []model.Real{{IP: netip.MustParseAddr("10.97.11.2"), Port: 8080, Weight: 1, Healthy: true}}}
	err := d.Reconcile(context.Background(), model.State{Services: []model.VirtualService{vs}})
	st := d.Status()
	var fails []string
	for _, f := range st.Failures {
		fails = append(fails, f.Step+": "+f.Err.Error())
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"mode": st.IPTablesMode, "failures": fails,
		"programmed": d.Programmed(), "error": fmt.Sprint(err)})
}

func serve() {
	name, port := os.Getenv("EDGE_NAME"), os.Getenv("EDGE_PORT")
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	pc, err := net.ListenPacket("udp", ":"+port)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name+" "+addr.String()+"\n"), addr)
		}
	}()
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			// Answer every further line on the same connection, so a test
			// can tell an established connection still reaches this real.
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			}
		}()
	}
}

// probeResult is one request's outcome.
type probeResult struct {
	Src  string `json:"src"`
	Name string `json:"name,omitempty"`
	Peer string `json:"peer,omitempty"`
	Ns   int64  `json:"ns"`
	// At is when the request started (Unix nanoseconds).
	At  int64  `json:"at"`
	Err string `json:"err,omitempty"`
}

func probe() {
	addr, proto := os.Getenv("EDGE_ADDR"), os.Getenv("EDGE_PROTO")
	n, _ := strconv.Atoi(os.Getenv("EDGE_N"))
	sport, _ := strconv.Atoi(os.Getenv("EDGE_SPORT"))
	srcs := strings.Split(os.Getenv("EDGE_SRCS"), ",")
	// EDGE_FOR: keep going for that long instead of EDGE_N requests.
	until := time.Time{}
	if d, err := time.ParseDuration(os.Getenv("EDGE_FOR")); err == nil {
		until, n = time.Now().Add(d), math.MaxInt
	}
	enc := json.NewEncoder(os.Stdout)
	used := map[string]bool{}
	for i := range n {
		if !until.IsZero() && time.Now().After(until) {
			break
		}
		src := srcs[i%len(srcs)]
		r := probeResult{Src: src}
		d := net.Dialer{Timeout: 2 * time.Second}
		if src != "" {
			ip := net.ParseIP(src)
			if proto == "udp" {
				d.LocalAddr = &net.UDPAddr{IP: ip, Port: sport}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: ip}
			}
		}
		start := time.Now()
		r.At = start.UnixNano()
		c, err := lbbed.DialFresh(&d, proto, addr, used)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if proto == "udp" {
				_, err = c.Write([]byte("hello\n"))
			}
			if err == nil {
				var line string
				line, err = bufio.NewReader(c).ReadString('\n')
				r.Name, r.Peer, _ = strings.Cut(strings.TrimSpace(line), " ")
			}
			c.Close()
		}
		r.Ns = time.Since(start).Nanoseconds()
		if err != nil {
			r.Err = err.Error()
		}
		enc.Encode(r)
	}
}

// helperCmd runs the test binary in a role inside namespace ns.
func helperCmd(ns string, env ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// startServer runs a serve helper in ns until the test ends.
func startServer(t testing.TB, ns, name string, port int) {
	t.Helper()
	cmd := helperCmd(ns, "EDGE_TEST_ROLE=serve", "EDGE_NAME="+name, "EDGE_PORT="+strconv.Itoa(port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("server %s in %s: %q %v", name, ns, line, err)
	}
}

// runProbe makes n requests from ns and returns the results in order.
func runProbe(t testing.TB, ns, proto, addr string, n int, srcs []string, sport int) []probeResult {
	t.Helper()
	cmd := helperCmd(ns, "EDGE_TEST_ROLE=probe", "EDGE_ADDR="+addr, "EDGE_PROTO="+proto,
		"EDGE_N="+strconv.Itoa(n), "EDGE_SRCS="+strings.Join(srcs, ","), "EDGE_SPORT="+strconv.Itoa(sport))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe %s %s from %s: %v", proto, addr, ns, err)
	}
	var res []probeResult
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var r probeResult
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		res = append(res, r)
	}
	if len(res) != n {
		t.Fatalf("probe returned %d results, want %d", len(res), n)
	}
	return res
}

// hold opens one TCP connection to EDGE_ADDR, prints the first answer, then
// for every line on stdin sends a line on the same connection and prints
// the answer: an established connection across dataplane changes.
func hold() {
	enc := json.NewEncoder(os.Stdout)
	c, err := net.DialTimeout("tcp", os.Getenv("EDGE_ADDR"), 2*time.Second)
	if err != nil {
		enc.Encode(probeResult{Err: err.Error()})
		return
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	answer := func() {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := rd.ReadString('\n')
		r := probeResult{}
		r.Name, r.Peer, _ = strings.Cut(strings.TrimSpace(line), " ")
		if err != nil {
			r.Err = err.Error()
		}
		enc.Encode(r)
	}
	answer()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		// A fresh deadline: the last one may have passed while idle.
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("again\n")); err != nil {
			enc.Encode(probeResult{Err: err.Error()})
			continue
		}
		answer()
	}
}
