// Package testbed brings the BGP test bed of hack/testbed/topology.sh up and
// down from Go tests: an edge namespace, Calico-style BIRD nodes with a pod
// each, an FRR router and a client. Every bed gets its own namespace prefix
// and directory, so packages testing in parallel never collide, and is torn
// down in t.Cleanup even when the test fails.
//
// Tests never enter the namespaces themselves (the test process must not
// setns): they run commands with `ip netns exec` / `ip -n` and poll the
// daemons' CLIs for the state they expect instead of sleeping.
package testbed

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/testreq"
)

// Options parameterise a bed (see topology.sh).
type Options struct {
	CalicoNodes int    // 1-3, default 1
	WithoutFRR  bool   // no FRR router
	FRRPassword string // TCP MD5 password FRR uses towards the edge
	FRRNetworks string // prefixes FRR announces, default 10.250.0.0/24
	FRRASN      uint32 // FRR's AS; another than 64512 makes it an eBGP peer
	// IPv6 adds fd99::1 (edge) and fd99::21 (FRR) and an IPv6 session
	// between them; FRR announces FRRNetworks6 on it.
	IPv6         bool
	FRRNetworks6 string
	PodPort      int
	// SharedPrefix is announced by every calico node (ECMP tests).
	SharedPrefix string
	// BirdGRTime is BIRD's graceful restart time (default BIRD's 120 s).
	BirdGRTime   time.Duration
	ExtraEnviron []string
}

// Bed is one running test bed.
type Bed struct {
	Dir    string
	Prefix string
	// Env is the script's `env` output: EDGE_IP, NS_EDGE, CALICO1_IP, ...
	Env     map[string]string
	script  string
	environ []string
	t       testing.TB
}

var seq atomic.Uint32

// RequireTools skips the test unless it runs as root with the daemons the
// bed needs installed.
func RequireTools(t testing.TB) {
	t.Helper()
	testreq.Root(t, "builds network namespaces")
	for _, bin := range []string{"ip", "bird", "birdc", "/usr/lib/frr/bgpd", "/usr/lib/frr/zebra", "vtysh"} {
		if _, err := exec.LookPath(bin); err != nil {
			testreq.Missing(t, "needs %s (apt-get install bird2 frr iproute2; make test does it)", bin)
		}
	}
}

// Script finds hack/testbed/topology.sh from the test's working directory.
func Script(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "hack", "testbed", "topology.sh")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("hack/testbed/topology.sh not found above the working directory")
		}
		dir = parent
	}
}

// Up builds a bed and registers its teardown.
func Up(t testing.TB, o Options) *Bed {
	t.Helper()
	RequireTools(t)
	dir, err := os.MkdirTemp("", "eatb-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &Bed{
		Dir:    dir,
		Prefix: fmt.Sprintf("eat%d%c-", os.Getpid()%100000, 'a'+rune(seq.Add(1)%26)),
		script: Script(t),
		t:      t,
	}
	b.environ = append(os.Environ(), "TESTBED_DIR="+dir, "NS_PREFIX="+b.Prefix)
	if o.CalicoNodes > 0 {
		b.environ = append(b.environ, fmt.Sprintf("CALICO_NODES=%d", o.CalicoNodes))
	}
	if o.WithoutFRR {
		b.environ = append(b.environ, "WITH_FRR=0")
	}
	if o.FRRPassword != "" {
		b.environ = append(b.environ, "FRR_PASSWORD="+o.FRRPassword)
	}
	if o.IPv6 {
		b.environ = append(b.environ, "WITH_IPV6=1")
	}
	if o.FRRNetworks6 != "" {
		b.environ = append(b.environ, "FRR_NETWORKS6="+o.FRRNetworks6)
	}
	if o.FRRASN != 0 {
		b.environ = append(b.environ, fmt.Sprintf("FRR_ASN=%d", o.FRRASN))
	}
	if o.FRRNetworks != "" {
		b.environ = append(b.environ, "FRR_NETWORKS="+o.FRRNetworks)
	}
	if o.BirdGRTime > 0 {
		b.environ = append(b.environ, fmt.Sprintf("BIRD_GR_TIME=%d", int(o.BirdGRTime.Seconds())))
	}
	if o.SharedPrefix != "" {
		b.environ = append(b.environ, "SHARED_PREFIX="+o.SharedPrefix)
	}
	if o.PodPort != 0 {
		b.environ = append(b.environ, fmt.Sprintf("POD_PORT=%d", o.PodPort))
	}
	b.environ = append(b.environ, o.ExtraEnviron...)
	t.Cleanup(func() {
		b.down(t)
		if t.Failed() {
			b.dumpLogs()
		}
		os.RemoveAll(dir)
	})
	if out, err := b.run("up"); err != nil {
		t.Fatalf("testbed up: %v\n%s", err, out)
	}
	out, err := b.run("env")
	if err != nil {
		t.Fatalf("testbed env: %v\n%s", err, out)
	}
	b.Env = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			b.Env[k] = v
		}
	}
	return b
}

// down tears the bed down and fails the test if any of its namespaces
// outlive that. A full `make test` has left a bed's namespaces behind (rarely,
// under load, with no process left in them and nothing logged); a second
// down is cheap and idempotent, and an error names what stayed.
func (b *Bed) down(t testing.TB) {
	var outs []string
	for range 2 {
		out, err := b.run("down")
		if err != nil {
			out = fmt.Sprintf("%v\n%s", err, out)
		}
		outs = append(outs, out)
		left, _ := filepath.Glob("/run/netns/" + b.Prefix + "*")
		if len(left) == 0 {
			if len(outs) > 1 {
				t.Logf("testbed down: the first down left namespaces behind:\n%s", outs[0])
			}
			return
		}
	}
	t.Errorf("testbed down left namespaces %s* behind:\n%s", b.Prefix, strings.Join(outs, "\n--- again:\n"))
}

func (b *Bed) run(verb string) (string, error) {
	cmd := exec.Command("bash", b.script, verb)
	cmd.Env = b.environ
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (b *Bed) dumpLogs() {
	for _, f := range []string{"calico1/bird.log", "frr1/bgpd.log"} {
		data, err := os.ReadFile(filepath.Join(b.Dir, f))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		b.t.Logf("--- tail of %s\n%s", f, strings.Join(lines, "\n"))
	}
}

// NS returns a namespace's full name ("edge", "calico1", "client", "frr1").
func (b *Bed) NS(short string) string { return b.Prefix + short }

// Exec runs a command inside a namespace of the bed and returns its
// combined output.
func (b *Bed) Exec(short string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", b.NS(short)}, args...)...).CombinedOutput()
	return string(out), err
}

// Command returns an unstarted command that runs inside a namespace.
func (b *Bed) Command(short string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", b.NS(short)}, args...)...)
}

// Birdc runs a birdc command against calico node n.
func (b *Bed) Birdc(n int, args ...string) (string, error) {
	ctl := filepath.Join(b.Dir, fmt.Sprintf("calico%d", n), "bird.ctl")
	out, err := exec.Command("birdc", append([]string{"-s", ctl}, args...)...).CombinedOutput()
	return string(out), err
}

// Vtysh runs one vtysh command on the FRR router.
func (b *Bed) Vtysh(command string) (string, error) {
	return b.Exec("frr1", "vtysh", "--vty_socket", filepath.Join(b.Dir, "frr1"), "-c", command)
}

// BirdProtocolState returns the state and info columns of BIRD protocol
// name on node n ("up Established", "start Active ...").
func (b *Bed) BirdProtocolState(n int, name string) string {
	out, err := b.Birdc(n, "show", "protocols", name)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == name {
			return strings.Join(f[3:], " ")
		}
	}
	return ""
}

// BirdSession is BIRD's state of protocol name on node n and when it
// entered it ("up 22:53:35.404 Established": "up", that time today).
func (b *Bed) BirdSession(n int, name string) (state string, since time.Time) {
	f := strings.Fields(b.BirdProtocolState(n, name))
	if len(f) < 2 {
		return strings.Join(f, " "), time.Time{}
	}
	state = strings.Join(append([]string{f[0]}, f[2:]...), " ")
	tod, err := time.ParseInLocation("15:04:05.000", f[1], time.Local)
	if err != nil {
		return state, time.Time{}
	}
	y, m, d := time.Now().Date()
	return state, time.Date(y, m, d, tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.Local)
}

// SameBirdSession reports whether two BirdSession readings describe one
// session: the same state, entered at the same moment. BIRD prints that
// moment a millisecond apart from one `show protocols` to the next now
// and then, so the times are compared to within 100 ms.
func SameBirdSession(stateA string, sinceA time.Time, stateB string, sinceB time.Time) bool {
	d := sinceA.Sub(sinceB)
	return stateA == stateB && d > -100*time.Millisecond && d < 100*time.Millisecond
}

// EdgeProtocol is the name of calico's BIRD protocol towards the edge.
func (b *Bed) EdgeProtocol() string {
	return "Global_" + strings.ReplaceAll(b.Env["EDGE_IP"], ".", "_")
}

// BirdRoute returns `birdc show route for PREFIX all` on node n, and
// whether BIRD has the exact prefix.
func (b *Bed) BirdRoute(n int, prefix string) (string, bool) {
	out, err := b.Birdc(n, "show", "route", prefix, "all")
	if err != nil {
		return out, false
	}
	return out, strings.Contains(out, prefix)
}

// FRRRoute returns `show bgp ipv4|ipv6 unicast PREFIX` and whether FRR
// has it.
func (b *Bed) FRRRoute(prefix string) (string, bool) {
	afi := "ipv4"
	if strings.Contains(prefix, ":") {
		afi = "ipv6"
	}
	out, err := b.Vtysh("show bgp " + afi + " unicast " + prefix)
	if err != nil {
		return out, false
	}
	return out, strings.Contains(out, "BGP routing table entry for "+prefix)
}

// FRRNeighborState returns FRR's state word for the edge session
// ("Established", "Active", ...).
func (b *Bed) FRRNeighborState() string {
	out, err := b.Vtysh("show bgp neighbors " + b.Env["EDGE_IP"])
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "BGP state = "); i >= 0 {
			s := strings.TrimSpace(l[i+len("BGP state = "):])
			s, _, _ = strings.Cut(s, ",")
			return s
		}
	}
	return ""
}

// StopBird stops BIRD on node n by its recorded PID; kill9 skips the
// orderly shutdown (its sessions just drop).
func (b *Bed) StopBird(n int, kill9 bool) {
	b.t.Helper()
	pidFile := filepath.Join(b.Dir, fmt.Sprintf("calico%d", n), "bird.pid")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		b.t.Fatalf("bird pid: %v", err)
	}
	pid := strings.TrimSpace(string(data))
	sig := "-TERM"
	if kill9 {
		sig = "-KILL"
	}
	if out, err := exec.Command("kill", sig, pid).CombinedOutput(); err != nil {
		b.t.Fatalf("kill %s %s: %v %s", sig, pid, err, out)
	}
	poll.Until(b.t, 10*time.Second, "BIRD to exit", func() (bool, string) {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		return err != nil || strings.Contains(string(st), ") Z "), ""
	})
}

// StartBird (re)starts the daemons that are not running (idempotent up).
func (b *Bed) StartBird() {
	b.t.Helper()
	if out, err := b.run("up"); err != nil {
		b.t.Fatalf("testbed up: %v\n%s", err, out)
	}
}

// BirdGRActive reports whether BIRD on node n still holds the routes of
// protocol name as stale, waiting for the peer's End-of-RIB after a
// graceful restart.
func (b *Bed) BirdGRActive(n int, name string) bool {
	out, _ := b.Birdc(n, "show", "protocols", "all", name)
	return strings.Contains(out, "graceful restart active")
}
