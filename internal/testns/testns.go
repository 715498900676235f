// Package testns creates throwaway network namespaces for tests that need
// the real kernel. Namespaces are made with `ip netns add` (so `ip -n NAME`
// and `ip netns exec NAME` work on them), named uniquely per test, and
// deleted in t.Cleanup even when the test fails.
//
// Tests must not setns the test process itself (namespaces are per OS thread
// and the Go runtime moves goroutines between threads): use Handle for
// netlink and Exec/Run for commands.
package testns

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/internal/testreq"
)

var seq atomic.Uint32

// RequireRoot skips the test, saying why, unless it runs as root; in CI
// (and under make test) it fails instead (package testreq).
func RequireRoot(t testing.TB) {
	t.Helper()
	testreq.Root(t, "creates network namespaces")
}

// NS is one network namespace.
type NS struct {
	Name string
	t    testing.TB
	h    *netlink.Handle
}

// New creates a namespace named "ea<pid%10000>-<tag><n>" (short: it is also
// used in interface names) and removes it when the test ends. Loopback is
// brought up.
func New(t testing.TB, tag string) *NS {
	t.Helper()
	RequireRoot(t)
	name := fmt.Sprintf("ea%d-%s%d", os.Getpid()%10000, tag, seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() {
		if ns.h != nil {
			ns.h.Close()
		}
		KillAll(name)
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	ns.MustRun("ip", "link", "set", "lo", "up")
	// No duplicate address detection: a test's links are its own, and an
	// address (a link-local one too) that stays tentative for a second or
	// two after the link comes up drops the test's first IPv6 packets.
	ns.MustRun("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return ns
}

// Handle returns a netlink handle bound to the namespace.
func (n *NS) Handle() *netlink.Handle {
	n.t.Helper()
	if n.h != nil {
		return n.h
	}
	fd, err := netns.GetFromName(n.Name)
	if err != nil {
		n.t.Fatalf("open netns %s: %v", n.Name, err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		n.t.Fatalf("netlink handle in %s: %v", n.Name, err)
	}
	n.h = h
	return h
}

// Cmd returns a command that runs inside the namespace.
func (n *NS) Cmd(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (n *NS) Run(name string, args ...string) (string, error) {
	out, err := n.Cmd(name, args...).CombinedOutput()
	return string(out), err
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(name string, args ...string) string {
	n.t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		n.t.Fatalf("in %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// Veth connects namespace a (interface devA, address addrA in CIDR form) to
// namespace b (devB, addrB). Empty addresses are left unset.
func Veth(t testing.TB, a *NS, devA, addrA string, b *NS, devB, addrB string) {
	t.Helper()
	a.MustRun("ip", "link", "add", devA, "type", "veth", "peer", "name", devB, "netns", b.Name)
	for _, e := range []struct {
		ns        *NS
		dev, addr string
	}{{a, devA, addrA}, {b, devB, addrB}} {
		if e.addr != "" {
			e.ns.MustRun("ip", "addr", "add", e.addr, "dev", e.dev)
		}
		e.ns.MustRun("ip", "link", "set", e.dev, "up")
	}
}

// KillAll kills every process running inside the named namespace, so a
// daemon a failed test left behind cannot outlive its namespace.
func KillAll(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		_ = exec.Command("kill", "-9", f).Run()
	}
}
