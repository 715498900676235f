package dataplane

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/internal/golden"
	"github.com/arraynetworks/edgeagent/model"
)

func vs(ns, name string, vip string, port uint16, proto model.Protocol, policy model.Policy, reals ...model.Real) model.VirtualService {
	return model.VirtualService{Namespace: ns, Route: name, Name: ns + "-" + name, VIP: netip.MustParseAddr(vip),
		Port: port, Protocol: proto, Policy: policy, Reals: reals}
}

func real(ep string, weight uint32) model.Real {
	ap := netip.MustParseAddrPort(ep)
	return model.Real{IP: ap.Addr(), Port: ap.Port(), Weight: weight, Healthy: true}
}

func realsN(n int, base string) []model.Real {
	var out []model.Real
	a := netip.MustParseAddr(base)
	for range n {
		out = append(out, model.Real{IP: a, Port: 8080, Weight: 1, Healthy: true})
		a = a.Next()
	}
	return out
}

func renderText(r *Rendered) string {
	var b strings.Builder
	b.WriteString("# IPv4\n" + r.V4.Format(r.Jumps) + "# IPv6\n" + r.V6.Format(r.Jumps))
	for _, k := range sortedKeys(r.Errors) {
		fmt.Fprintf(&b, "# error %s: %v\n", k, r.Errors[k])
	}
	return b.String()
}

func TestRenderGolden(t *testing.T) {
	unhealthy := real("10.244.1.12:8080", 1)
	unhealthy.Healthy = false
	terminating := real("10.244.1.13:8080", 1)
	terminating.Terminating = true
	masq := RenderOptions{Masquerade: true}
	cases := []struct {
		name string
		opt  RenderOptions
		vs   []model.VirtualService
	}{
		{"rr", masq, []model.VirtualService{vs("shop", "web", "10.200.0.10", 80, model.TCP, model.RoundRobin,
			real("10.244.1.11:8080", 1), real("10.244.1.10:8080", 1), real("10.244.2.10:8080", 1), unhealthy, terminating)}},
		{"wrr", masq, []model.VirtualService{vs("shop", "web", "10.200.0.10", 80, model.TCP, model.WeightedRoundRobin,
			real("10.244.1.10:8080", 3), real("10.244.1.11:8080", 1), real("10.244.1.12:8080", 2))}},
		{"wrr-large-weights", masq, []model.VirtualService{vs("shop", "web", "10.200.0.10", 80, model.TCP, model.WeightedRoundRobin,
			real("10.244.1.10:8080", 97), real("10.244.1.11:8080", 89), real("10.244.1.12:8080", 100), real("10.244.1.13:8080", 1))}},
		{"random", masq, []model.VirtualService{vs("shop", "dns", "10.200.0.11", 53, model.UDP, model.Random,
			realsN(3, "10.244.1.10")...), vs("shop", "w", "10.200.0.11", 80, model.TCP, model.Random,
			real("10.244.1.10:8080", 1), real("10.244.1.11:8080", 3))}},
		{"sh", masq, []model.VirtualService{vs("shop", "web", "10.200.0.10", 80, model.TCP, model.SourceHash,
			real("10.244.1.10:8080", 1), real("10.244.1.11:8080", 2), real("10.244.1.12:8080", 1))}},
		{"sh-many-reals", masq, []model.VirtualService{vs("shop", "big", "10.200.0.10", 80, model.TCP, model.SourceHash,
			realsN(40, "10.244.1.10")...)}},
		{"no-local-traffic", RenderOptions{Masquerade: true, NoLocalTraffic: true}, []model.VirtualService{vs("shop", "web", "10.200.0.10", 80, model.TCP, model.RoundRobin,
			realsN(2, "10.244.1.10")...)}},
		{"no-masquerade", RenderOptions{}, []model.VirtualService{vs("shop", "web", "10.200.0.10", 80, model.TCP, model.RoundRobin,
			realsN(2, "10.244.1.10")...)}},
		{"no-reals-reject", masq, []model.VirtualService{
			vs("shop", "tcp", "10.200.0.10", 80, model.TCP, model.RoundRobin, unhealthy),
			vs("shop", "udp", "10.200.0.10", 53, model.UDP, model.RoundRobin),
			vs("shop", "tcp6", "fd00:200::10", 80, model.TCP, model.RoundRobin),
			vs("shop", "udp6", "fd00:200::10", 53, model.UDP, model.RoundRobin)}},
		{"ipv6", masq, []model.VirtualService{vs("shop", "web6", "fd00:200::1:2a", 443, model.TCP, model.RoundRobin,
			real("[fd00:244::10]:8443", 1), real("[fd00:244::11]:8443", 1))}},
		{"dispatch", masq, []model.VirtualService{
			vs("a", "one", "10.200.0.10", 80, model.TCP, model.RoundRobin, realsN(1, "10.244.1.10")...),
			vs("a", "two", "10.200.1.10", 80, model.TCP, model.RoundRobin, realsN(1, "10.244.1.10")...),
			vs("a", "three", "10.200.0.10", 443, model.TCP, model.RoundRobin, realsN(1, "10.244.1.10")...),
			vs("a", "four", "10.200.0.27", 80, model.UDP, model.RoundRobin, realsN(1, "10.244.1.10")...),
			vs("a", "five", "10.200.3.250", 80, model.TCP, model.RoundRobin, realsN(1, "10.244.1.10")...)}},
		{"invalid", masq, []model.VirtualService{
			vs("bad", "family", "10.200.0.10", 80, model.TCP, model.RoundRobin, real("[fd00::1]:80", 1)),
			vs("bad", "policy", "10.200.0.11", 80, model.TCP, "lc", realsN(1, "10.244.1.10")...),
			vs("bad", "port", "10.200.0.12", 0, model.TCP, model.RoundRobin, realsN(1, "10.244.1.10")...),
			vs("bad", "dup", "10.200.0.20", 80, model.TCP, model.RoundRobin, realsN(1, "10.244.1.10")...),
			vs("good", "dup", "10.200.0.20", 80, model.TCP, model.RoundRobin, realsN(1, "10.244.1.11")...),
			vs("good", "web", "10.200.0.21", 80, model.TCP, model.RoundRobin, realsN(1, "10.244.1.10")...)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := renderText(Render(c.vs, c.opt))
			golden.AssertString(t, filepath.Join("testdata", c.name+".golden"), got)
		})
	}
}
