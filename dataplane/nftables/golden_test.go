package nftables

import (
	"fmt"
	"strings"
	"testing"

	"github.com/arraynetworks/edgeagent/internal/golden"
	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/model"
)

// TestTableGolden programs one service of every kind into a namespace and
// compares the table as nft lists it with testdata/table.nft: the layout
// (chains, priorities, selector rules, set types) as an operator sees it.
// The slot maps are summarised as element counts (an sh service alone has
// 4093 slots).
func TestTableGolden(t *testing.T) {
	ns := testns.New(t, "gold")
	b := nsBackend(t, ns, Options{Masquerade: true})
	wrr := lbbed.Service("g", "wrr", "10.200.0.2", 80, model.TCP, model.WeightedRoundRobin, lbbed.RealV4(1), lbbed.RealV4(2))
	wrr.Reals[0].Weight = 2
	mustSync(t, b,
		lbbed.Service("g", "rr", "10.200.0.1", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1), lbbed.RealV4(2), lbbed.RealV4(3)),
		wrr,
		lbbed.Service("g", "random", "10.200.0.3", 53, model.UDP, model.Random, lbbed.RealV4(1), lbbed.RealV4(2)),
		lbbed.Service("g", "sh", "10.200.0.4", 443, model.TCP, model.SourceHash, lbbed.RealV4(1), lbbed.RealV4(2)),
		lbbed.Service("g", "one", "10.200.0.5", 80, model.TCP, model.SourceHash, lbbed.RealV4(1)),
		lbbed.Service("g", "down", "10.200.0.6", 80, model.TCP, model.RoundRobin),
		lbbed.Service("g", "rr6", "fd00:200::1", 80, model.TCP, model.RoundRobin, lbbed.RealV6(1), lbbed.RealV6(2)),
		lbbed.Service("g", "down6", "fd00:200::2", 53, model.UDP, model.RoundRobin),
	)
	got := summariseSlots(ruleset(t, ns))
	golden.AssertString(t, "testdata/table.nft", got)
}

// summariseSlots replaces the elements of the slot maps with their count.
func summariseSlots(s string) string {
	var out []string
	inSlots := false
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "map slots"):
			inSlots = true
		case inSlots && strings.HasPrefix(l, "elements = {"):
			l = fmt.Sprintf("# %d elements", strings.Count(l, ",")+1)
		case l == "}":
			inSlots = false
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
