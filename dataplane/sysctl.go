package dataplane

import (
	"context"
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

// ensure sets name to value unless it already has it; reports whether it
// changed anything.
func (s sysctls) ensure(ctx context.Context, name, value string) (bool, error) {
	cur, err := s.get(ctx, name)
	if err != nil {
		return false, err
	}
	if cur == value {
		return false, nil
	}
	if len(s.run.prefix) == 0 {
		err = os.WriteFile("/proc/sys/"+strings.ReplaceAll(name, ".", "/"), []byte(value), 0o644)
	} else {
		_, err = s.run.output(ctx, nil, "sysctl", "-w", name+"="+value)
	}
	if err != nil {
		return false, fmt.Errorf("set sysctl %s=%s: %w", name, value, err)
	}
	return true, nil
}
