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

// sysctls reads and writes /proc/sys of the namespace the commands run in:
// directly when there is no command prefix, else through the sysctl tool
// behind the prefix.
type sysctls struct {
	run runner
}

func (s sysctls) get(ctx context.Context, name string) (string, error) {
	if len(s.run.prefix) == 0 {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
		if err != nil {
			return "", fmt.Errorf("read sysctl %s: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	b, err := s.run.output(ctx, nil, "sysctl", "-n", name)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ensure sets name to value unless it already has it; it returns the value
// it found and whether it changed it. In a container without privileges
// /proc/sys is read-only, so the write fails: `edgeagent prepare-node`, run
// privileged before the agent (an init container), sets them instead.
func (s sysctls) ensure(ctx context.Context, name, value string) (string, bool, error) {
	cur, err := s.get(ctx, name)
	if err != nil {
		return "", false, err
	}
	if cur == value {
		return cur, false, nil
	}
	if len(s.run.prefix) == 0 {
		err = os.WriteFile("/proc/sys/"+strings.ReplaceAll(name, ".", "/"), []byte(value), 0o644)
	} else {
		_, err = s.run.output(ctx, nil, "sysctl", "-w", name+"="+value)
	}
	if err != nil {
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
	s := sysctls{}
	names := []string{sysctlIPv4Forward}
	if ipv6 {
		names = append(names, sysctlIPv6Forward)
	}
	before := map[string]string{}
	var errs []error
	for _, n := range names {
		cur, _, err := s.ensure(ctx, n, "1")
		if cur != "" {
			before[n] = cur
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return before, errors.Join(errs...)
}
