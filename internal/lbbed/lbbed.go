// Package lbbed is a traffic test bed for the dataplane backends: a client
// namespace routed through an edge namespace (where a dataplane runs) to
// real-server namespaces, and the helpers that send real traffic through
// it. The test binary doubles as the traffic helper it runs inside the
// namespaces (`ip netns exec NS <test binary>` with EDGE_TEST_ROLE set):
// a package using the bed calls Main from its TestMain, so kernel tests need
// no external tools and the test process never changes namespace.
//
//	client 10.97.1.2-.26, fd97:1::2 ── edge 10.97.1.1, fd97:1::1
//	edge 10.97.1<i>.1, fd97:1<i>::1 ── real i 10.97.1<i>.2, fd97:1<i>::2   (serving r<i> on 8080)
package lbbed

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/model"
)

// Main runs the helper role named by EDGE_TEST_ROLE and exits, or returns
// when there is none (the normal test run). Call it first in TestMain.
func Main() {
	switch os.Getenv("EDGE_TEST_ROLE") {
	case "serve":
		serve()
	case "probe":
		probe()
	case "hold":
		hold()
	default:
		return
	}
	os.Exit(0)
}

// Bed is one test network.
type Bed struct {
	Client, Edge *testns.NS
	Reals        []*testns.NS
	// Srcs are the client's source addresses, 10.97.1.2 to .26; Srcs6
	// its IPv6 ones, fd97:1::2 to ::11.
	Srcs, Srcs6 []string
}

// New builds a bed with nReals real servers.
func New(t testing.TB, nReals int) *Bed {
	t.Helper()
	b := &Bed{Client: testns.New(t, "cl"), Edge: testns.New(t, "ed")}
	link := func(a *testns.NS, devA string, c *testns.NS, devB string, v4a, v4b, v6a, v6b string) {
		testns.Veth(t, a, devA, v4a, c, devB, v4b)
		a.MustRun("ip", "addr", "add", v6a, "dev", devA, "nodad")
		c.MustRun("ip", "addr", "add", v6b, "dev", devB, "nodad")
	}
	link(b.Edge, "e0", b.Client, "c0", "10.97.1.1/24", "10.97.1.2/24", "fd97:1::1/64", "fd97:1::2/64")
	b.Srcs = []string{"10.97.1.2"}
	for i := 3; i <= 26; i++ {
		a := fmt.Sprintf("10.97.1.%d", i)
		b.Client.MustRun("ip", "addr", "add", a+"/24", "dev", "c0")
		b.Srcs = append(b.Srcs, a)
	}
	b.Srcs6 = []string{"fd97:1::2"}
	for i := 3; i <= 17; i++ {
		a := fmt.Sprintf("fd97:1::%x", i)
		b.Client.MustRun("ip", "addr", "add", a+"/64", "dev", "c0", "nodad")
		b.Srcs6 = append(b.Srcs6, a)
	}
	b.Client.MustRun("ip", "route", "add", "default", "via", "10.97.1.1")
	b.Client.MustRun("ip", "-6", "route", "add", "default", "via", "fd97:1::1")
	b.Edge.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	for i := 1; i <= nReals; i++ {
		r := testns.New(t, fmt.Sprintf("r%d", i))
		link(b.Edge, fmt.Sprintf("r%d", i), r, "eth0",
			fmt.Sprintf("10.97.1%d.1/24", i), fmt.Sprintf("10.97.1%d.2/24", i),
			fmt.Sprintf("fd97:1%d::1/64", i), fmt.Sprintf("fd97:1%d::2/64", i))
		// Replies route back through the edge, so the test also works
		// without masquerading.
		r.MustRun("ip", "route", "add", "default", "via", fmt.Sprintf("10.97.1%d.1", i))
		r.MustRun("ip", "-6", "route", "add", "default", "via", fmt.Sprintf("fd97:1%d::1", i))
		StartServer(t, r.Name, fmt.Sprintf("r%d", i), 8080)
		b.Reals = append(b.Reals, r)
	}
	return b
}

// AddVIPs puts addresses on a link vip0 in the edge namespace (what the
// dataplane's VIP interface does), so traffic to a VIP without an eligible
// real reaches the input hook. vip0 is a dummy, or a bridge without ports
// where the kernel has no dummy driver.
func (b *Bed) AddVIPs(t testing.TB, vips ...string) {
	t.Helper()
	if _, err := b.Edge.Run("ip", "link", "show", "vip0"); err != nil {
		if _, err := b.Edge.Run("ip", "link", "add", "vip0", "type", "dummy"); err != nil {
			b.Edge.MustRun("ip", "link", "add", "vip0", "type", "bridge")
		}
		b.Edge.MustRun("ip", "link", "set", "vip0", "up")
	}
	for _, v := range vips {
		bits := "/32"
		if strings.Contains(v, ":") {
			bits = "/128"
		}
		b.Edge.MustRun("ip", "addr", "replace", v+bits, "dev", "vip0", "nodad")
	}
}

// RealV4 is real i's (1-based) IPv4 endpoint, RealV6 its IPv6 one.
func RealV4(i int) model.Real { return Real(fmt.Sprintf("10.97.1%d.2:8080", i), 1) }

// RealV6 is real i's IPv6 endpoint.
func RealV6(i int) model.Real { return Real(fmt.Sprintf("[fd97:1%d::2]:8080", i), 1) }

// Real is a healthy real at ep with a weight.
func Real(ep string, w uint32) model.Real {
	ap := netipMustAddrPort(ep)
	return model.Real{IP: ap.Addr(), Port: ap.Port(), Weight: w, Healthy: true}
}

// Service is a virtual service for tests.
func Service(ns, name, vip string, port uint16, proto model.Protocol, policy model.Policy, reals ...model.Real) model.VirtualService {
	return model.VirtualService{Namespace: ns, Route: name, VIP: netipMustAddr(vip), Port: port, Protocol: proto,
		Policy: policy, Reals: reals}
}

// Result is one request's outcome: the real that answered (its name) and
// the peer address it saw.
type Result struct {
	Src  string `json:"src"`
	Name string `json:"name,omitempty"`
	Peer string `json:"peer,omitempty"`
	Ns   int64  `json:"ns"`
	Err  string `json:"err,omitempty"`
}

// Names lists the answering reals ("error: ..." for failures).
func Names(res []Result) []string {
	out := make([]string, len(res))
	for i, r := range res {
		out[i] = r.Name
		if r.Err != "" {
			out[i] = "error: " + r.Err
		}
	}
	return out
}

// Counts counts answers per real.
func Counts(res []Result) map[string]int {
	out := map[string]int{}
	for _, n := range Names(res) {
		out[n]++
	}
	return out
}

// Probe makes n requests from namespace ns to addr: TCP connections, or
// UDP datagrams from new sockets (sport 0) or one fixed source port,
// cycling through the source addresses srcs ("" = any; "A+N" = N
// consecutive addresses from A, see SourceRange).
func Probe(t testing.TB, ns, proto, addr string, n int, srcs []string, sport int) []Result {
	t.Helper()
	cmd := helper(ns, "EDGE_TEST_ROLE=probe", "EDGE_ADDR="+addr, "EDGE_PROTO="+proto,
		"EDGE_N="+strconv.Itoa(n), "EDGE_SRCS="+strings.Join(srcs, ","), "EDGE_SPORT="+strconv.Itoa(sport))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe %s %s from %s: %v", proto, addr, ns, err)
	}
	var res []Result
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var r Result
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

// Hold is one TCP connection kept open across dataplane changes.
type Hold struct {
	send  func() error
	dec   *json.Decoder
	First Result // the answer to the connection's first request
}

// OpenHold connects from ns to addr and reads the first answer.
func OpenHold(t testing.TB, ns, addr string) *Hold {
	t.Helper()
	cmd := helper(ns, "EDGE_TEST_ROLE=hold", "EDGE_ADDR="+addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	h := &Hold{dec: json.NewDecoder(stdout), send: func() error { _, err := fmt.Fprintln(stdin, "again"); return err }}
	if err := h.dec.Decode(&h.First); err != nil || h.First.Err != "" {
		t.Fatalf("hold %s: %v %+v", addr, err, h.First)
	}
	return h
}

// Again sends one more request on the held connection and returns the
// answer.
func (h *Hold) Again(t testing.TB) Result {
	t.Helper()
	if err := h.send(); err != nil {
		t.Fatalf("hold: send: %v", err)
	}
	var r Result
	if err := h.dec.Decode(&r); err != nil {
		t.Fatalf("hold: read: %v", err)
	}
	return r
}

// helper runs the test binary in a role inside namespace ns.
func helper(ns string, env ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// StartServer runs a server named name in ns on port (TCP and UDP) until
// the test ends. Every answer is "<name> <peer address>\n".
func StartServer(t testing.TB, ns, name string, port int) {
	t.Helper()
	cmd := helper(ns, "EDGE_TEST_ROLE=serve", "EDGE_NAME="+name, "EDGE_PORT="+strconv.Itoa(port))
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

// serve answers every TCP connection (and every further line on it) and
// every UDP datagram on EDGE_PORT with "<EDGE_NAME> <peer address>".
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
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			}
		}()
	}
}

// probe makes EDGE_N requests to EDGE_ADDR and prints one JSON Result each.
func probe() {
	addr, proto := os.Getenv("EDGE_ADDR"), os.Getenv("EDGE_PROTO")
	n, _ := strconv.Atoi(os.Getenv("EDGE_N"))
	sport, _ := strconv.Atoi(os.Getenv("EDGE_SPORT"))
	srcs := expandSrcs(os.Getenv("EDGE_SRCS"))
	enc := json.NewEncoder(os.Stdout)
	used := map[string]bool{}
	for i := range n {
		src := srcs[i%len(srcs)]
		r := Result{Src: src}
		d := net.Dialer{Timeout: 2 * time.Second}
		if src != "" {
			ip := net.ParseIP(src)
			if proto == "udp" {
				d.LocalAddr = &net.UDPAddr{IP: ip, Port: sport}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: ip}
			}
		} else if sport != 0 && proto == "udp" {
			d.LocalAddr = &net.UDPAddr{Port: sport}
		}
		start := time.Now()
		c, err := DialFresh(&d, proto, addr, used)
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

// DialFresh dials like d.Dial, except that a UDP socket from an ephemeral
// port never reuses a source address in used (the ones this probe has
// already sent from; DialFresh records each new one). A datagram from a
// reused port matches the earlier datagram's conntrack entry and goes to
// the same real without the scheduler advancing, which reads as a broken
// round-robin cycle (1 run in a few hundred at 12 datagrams). A fixed
// local port (EDGE_SPORT) is reused on purpose. The dataplane package's own
// probe uses it too.
func DialFresh(d *net.Dialer, proto, addr string, used map[string]bool) (net.Conn, error) {
	for {
		c, err := d.Dial(proto, addr)
		if err != nil || proto != "udp" {
			return c, err
		}
		if la, ok := d.LocalAddr.(*net.UDPAddr); ok && la.Port != 0 {
			return c, nil
		}
		// Connecting a UDP socket sends nothing, so a redial leaves no trace.
		if local := c.LocalAddr().String(); !used[local] {
			used[local] = true
			return c, nil
		}
		c.Close()
	}
}

// hold opens one TCP connection to EDGE_ADDR, prints the first answer, then
// for every line on stdin sends a line on the same connection and prints
// the answer.
func hold() {
	enc := json.NewEncoder(os.Stdout)
	c, err := net.DialTimeout("tcp", os.Getenv("EDGE_ADDR"), 2*time.Second)
	if err != nil {
		enc.Encode(Result{Err: err.Error()})
		return
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	answer := func() {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := rd.ReadString('\n')
		r := Result{}
		r.Name, r.Peer, _ = strings.Cut(strings.TrimSpace(line), " ")
		if err != nil {
			r.Err = err.Error()
		}
		enc.Encode(r)
	}
	answer()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if _, err := c.Write([]byte("again\n")); err != nil {
			enc.Encode(Result{Err: err.Error()})
			continue
		}
		answer()
	}
}

func netipMustAddr(s string) netip.Addr         { return netip.MustParseAddr(s) }
func netipMustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// SourceRange names n consecutive source addresses starting at first, for
// Probe: many sources without a long environment variable.
func SourceRange(first netip.Addr, n int) string { return fmt.Sprintf("%s+%d", first, n) }

func expandSrcs(spec string) []string {
	var out []string
	for _, s := range strings.Split(spec, ",") {
		first, n, ok := strings.Cut(s, "+")
		if !ok {
			out = append(out, s)
			continue
		}
		a := netip.MustParseAddr(first)
		count, _ := strconv.Atoi(n)
		for range count {
			out = append(out, a.String())
			a = a.Next()
		}
	}
	return out
}
