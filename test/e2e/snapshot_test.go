package e2e

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/testbed"
)

// nsState is what `edgeagent cleanup` must restore in the edge namespace:
// its iptables rules and chains, links, addresses, routes of every table,
// policy rules and the forwarding sysctls the dataplane may switch on.
type nsState map[string]string

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// builtinChains have an ACCEPT policy in a fresh namespace: a table holding
// only those, with no rule, filters nothing and counts as absent (iptables
// registers a table the first time anyone lists or changes it, and does not
// unregister it again).
var builtinChains = map[string]bool{
	"PREROUTING": true, "INPUT": true, "FORWARD": true, "OUTPUT": true, "POSTROUTING": true,
}

func normIptables(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "", strings.HasPrefix(l, "#"), l == "COMMIT", strings.HasPrefix(l, "*"):
			continue
		case strings.HasPrefix(l, ":"):
			f := strings.Fields(counters.ReplaceAllString(l, ""))
			if len(f) >= 2 && builtinChains[f[0][1:]] && f[1] == "ACCEPT" {
				continue
			}
			keep = append(keep, strings.Join(f, " "))
		default:
			keep = append(keep, l)
		}
	}
	sort.Strings(keep)
	return strings.Join(keep, "\n")
}

func captureEdge(t *testing.T, bed *testbed.Bed) nsState {
	t.Helper()
	// Fresh links' IPv6 link-local addresses are "tentative" (and have no
	// local route yet) until duplicate address detection ends: wait, or
	// the comparison would report the kernel's progress as a difference.
	poll.Until(t, 10*time.Second, "IPv6 duplicate address detection to end in the edge namespace", func() (bool, string) {
		out, _ := bed.Exec("edge", "ip", "-6", "addr", "show", "tentative")
		return strings.TrimSpace(out) == "", out
	})
	st := nsState{}
	run := func(key string, args ...string) {
		out, err := bed.Exec("edge", args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		// `ip link show` complains on stderr about a veth whose peer's
		// namespace another test is deleting at that moment: not state.
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, "Error: Peer netns reference is invalid.") {
				lines = append(lines, l)
			}
		}
		st[key] = strings.Join(lines, "\n")
	}
	run("iptables", "iptables-save")
	st["iptables"] = normIptables(st["iptables"])
	run("ip6tables", "ip6tables-save")
	st["ip6tables"] = normIptables(st["ip6tables"])
	run("nftables", "nft", "list", "tables")
	st["nftables"] = normNFTables(st["nftables"])
	run("links", "ip", "-o", "link", "show")
	run("addresses", "ip", "-o", "addr", "show")
	run("routes", "ip", "route", "show", "table", "all")
	run("routes6", "ip", "-6", "route", "show", "table", "all")
	run("rules", "ip", "rule", "show")
	run("rules6", "ip", "-6", "rule", "show")
	run("sysctls", "sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
	return st
}

// normNFTables keeps the nftables tables that are not iptables-nft's (those
// are in the iptables keys, where empty ones count as absent): the agent's
// table inet edgeagent, and anyone else's.
func normNFTables(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && (f[1] == "ip" || f[1] == "ip6") && slices.Contains([]string{"filter", "nat", "mangle", "raw", "security"}, f[2]) {
			continue
		}
		if l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
