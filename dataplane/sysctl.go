package dataplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Sysctls the dataplane needs: forwarding, so DNATed packets leave towards
// the reals. IPv6 forwarding is only switched on once an IPv6 service
// exists, because it makes the kernel ignore router advertisements.
// rp_filter needs no change: replies come back on the interface the client's
// route points at, and masqueraded traffic is answered to this node.
const (
	sysctlIPv4Forward = "net.ipv4.ip_forward"
	sysctlIPv6Forward = "net.ipv6.conf.all.forwarding"
)

// sysctlIO reads and writes the sysctls of one network namespace. The
// dataplane needs only these two operations; the unit tests fake them (a
// read-only /proc/sys, say) to drive the sysctl step's failure path.
type sysctlIO interface {
	get(ctx context.Context, name string) (string, error)
	set(ctx context.Context, name, value string) error
}

// procSysctl works on /proc/sys of the process's own namespace.
type procSysctl struct{}

func sysctlPath(name string) string { return "/proc/sys/" + strings.ReplaceAll(name, ".", "/") }

func (procSysctl) get(_ context.Context, name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (procSysctl) set(_ context.Context, name, value string) error {
	return os.WriteFile(sysctlPath(name), []byte(value), 0o644)
}

// cmdSysctl runs the sysctl tool behind a command prefix (tests reach a
// namespace through `ip netns exec NS`).
type cmdSysctl struct {
	prefix []string
}

func (c cmdSysctl) get(ctx context.Context, name string) (string, error) {
	b, err := output(ctx, c.prefix, nil, "sysctl", "-n", name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (c cmdSysctl) set(ctx context.Context, name, value string) error {
	_, err := output(ctx, c.prefix, nil, "sysctl", "-w", name+"="+value)
	return err
}

// newSysctlIO picks /proc/sys without a prefix, the sysctl tool with one.
func newSysctlIO(prefix []string) sysctlIO {
	if len(prefix) == 0 {
		return procSysctl{}
	}
	return cmdSysctl{prefix: prefix}
}

// ensureSysctl sets name to value unless it already has it; it returns the
// value it found and whether it changed it. In a container without
// privileges /proc/sys is read-only, so the write fails: `edgeagent
// prepare-node`, run privileged before the agent (an init container), sets
// them instead.
func ensureSysctl(ctx context.Context, s sysctlIO, name, value string) (string, bool, error) {
	cur, err := s.get(ctx, name)
	if err != nil {
		return "", false, fmt.Errorf("read sysctl %s: %w", name, err)
	}
	if cur == value {
		return cur, false, nil
	}
	if err := s.set(ctx, name, value); err != nil {
		return cur, false, fmt.Errorf("set sysctl %s=%s (it is %s): %w", name, value, cur, err)
	}
	return cur, true, nil
}

// PrepareNode switches on the forwarding the dataplane needs, in the
// process's network namespace: IPv4 always, IPv6 when ipv6 is set (the
// configuration has IPv6 VIP pools). It is for `edgeagent prepare-node`,
// run privileged before the agent (an init container): the agent's own
// container is unprivileged, and its /proc/sys is read-only. It returns each
// sysctl's value before the change.
func PrepareNode(ctx context.Context, ipv6 bool) (map[string]string, error) {
	var s procSysctl
	names := []string{sysctlIPv4Forward}
	if ipv6 {
		names = append(names, sysctlIPv6Forward)
	}
	before := map[string]string{}
	var errs []error
	for _, n := range names {
		cur, _, err := ensureSysctl(ctx, s, n, "1")
		if cur != "" {
			before[n] = cur
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return before, errors.Join(errs...)
}
