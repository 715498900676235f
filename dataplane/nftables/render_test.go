package nftables

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/model"
)

func eps(rs ...model.Real) []netip.AddrPort {
	var out []netip.AddrPort
	for _, r := range rs {
		out = append(out, r.Endpoint())
	}
	return out
}

func weighted(w ...uint32) []model.Real {
	var out []model.Real
	for i, x := range w {
		out = append(out, lbbed.Real(fmt.Sprintf("10.0.0.%d:80", i+1), x))
	}
	return out
}

func TestSlotTable(t *testing.T) {
	a, b, c := lbbed.Real("10.0.0.1:80", 1), lbbed.Real("10.0.0.2:80", 1), lbbed.Real("10.0.0.3:80", 1)
	for _, tc := range []struct {
		name   string
		policy model.Policy
		reals  []model.Real
		sel    selector
		slots  []netip.AddrPort
	}{
		{"none", model.RoundRobin, nil, selector{}, nil},
		{"one real, any policy", model.SourceHash, []model.Real{a}, selector{kindInc, 1}, eps(a)},
		{"rr", model.RoundRobin, []model.Real{a, b, c}, selector{kindInc, 3}, eps(a, b, c)},
		{"wrr 3:2:1", model.WeightedRoundRobin, weighted(3, 2, 1), selector{kindInc, 6},
			eps(weighted(3, 2, 1)[0], weighted(3, 2, 1)[1], weighted(3, 2, 1)[0], weighted(3, 2, 1)[2], weighted(3, 2, 1)[1], weighted(3, 2, 1)[0])},
		{"wrr ÷ gcd", model.WeightedRoundRobin, weighted(300, 100), selector{kindInc, 4},
			eps(weighted(1, 1)[0], weighted(1, 1)[0], weighted(1, 1)[1], weighted(1, 1)[0])},
		{"random equal", model.Random, []model.Real{a, b}, selector{kindRand, 2}, eps(a, b)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, got := slotTable(tc.policy, tc.reals)
			if sel != tc.sel || !slices.Equal(got, tc.slots) {
				t.Fatalf("slotTable = %v %v, want %v %v", sel, got, tc.sel, tc.slots)
			}
		})
	}
}

// wrr weights summing to more than 256 are apportioned over 256 slots,
// each real within one slot of its exact share.
func TestSlotTableLargeWeights(t *testing.T) {
	reals := weighted(1000, 999, 1, 7)
	sel, got := slotTable(model.WeightedRoundRobin, reals)
	if sel != (selector{kindInc, 256}) || len(got) != 256 {
		t.Fatalf("selector %v, %d slots", sel, len(got))
	}
	count := map[netip.AddrPort]int{}
	for _, ep := range got {
		count[ep]++
	}
	for i, w := range []float64{1000, 999, 1, 7} {
		exact := w / 2007 * 256
		if d := float64(count[reals[i].Endpoint()]) - exact; d <= -1.5 || d >= 1.5 {
			t.Errorf("real %d: %d slots, exact share %.2f", i, count[reals[i].Endpoint()], exact)
		}
	}
}

func TestSlotTableSourceHash(t *testing.T) {
	reals := weighted(1, 1, 1, 1)
	sel, got := slotTable(model.SourceHash, reals)
	if sel != (selector{kindHash, shSlots}) || len(got) != shSlots {
		t.Fatalf("selector %v, %d slots", sel, len(got))
	}
	count := map[netip.AddrPort]int{}
	for _, ep := range got {
		count[ep]++
	}
	for _, r := range reals {
		if c := count[r.Endpoint()]; c != shSlots/4 && c != shSlots/4+1 {
			t.Errorf("%s: %d slots of %d", r.Endpoint(), c, shSlots)
		}
	}
	// Weighted: 3:1.
	_, got = slotTable(model.SourceHash, weighted(3, 1))
	n := 0
	for _, ep := range got {
		if ep == weighted(1)[0].Endpoint() {
			n++
		}
	}
	if exact := shSlots * 3 / 4; n < exact-3 || n > exact+3 {
		t.Errorf("sh 3:1: the heavy real has %d of %d slots", n, shSlots)
	}
}

func TestRenderRejects(t *testing.T) {
	down := lbbed.Real("10.0.0.1:80", 1)
	down.Healthy = false
	vs := lbbed.Service("n", "x", "10.1.0.1", 80, model.TCP, model.RoundRobin, down)
	r := render(&vs)
	if r.err != nil || len(r.slots) != 0 {
		t.Fatalf("render = %+v", r)
	}
	var sets []string
	r.elements(func(set, _, _ string) { sets = append(sets, set) })
	if !slices.Equal(sets, []string{"reject4"}) {
		t.Fatalf("a service without eligible reals contributes %v, want the reject set only", sets)
	}
}

func TestSetNames(t *testing.T) {
	for _, f := range families {
		for _, s := range []selector{{kindInc, 1}, {kindRand, 256}, {kindHash, shSlots}} {
			name := s.setName(f)
			gf, gs, ok := parseSetName(name)
			if !ok || gf != f || gs != s {
				t.Errorf("parseSetName(%q) = %v %v %v", name, gf, gs, ok)
			}
		}
	}
	for _, bad := range []string{"slots4", "reject6", "fe4_inc_0", "fe5_inc_3", "fe4_xyz_3", "fe4_inc_03", "fe4_inc_3_x", "fe4_inc_-1", "fe4__3"} {
		if _, _, ok := parseSetName(bad); ok {
			t.Errorf("parseSetName(%q) accepted", bad)
		}
	}
}

func TestElementEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		// proto (padded to 4) . address . port (network order, padded).
		{"v4 frontend", frontendKey(6, netip.MustParseAddr("10.200.0.1"), 80), "06000000" + "0ac80001" + "00500000"},
		{"v6 frontend", frontendKey(17, netip.MustParseAddr("fd00::1"), 53), "11000000" + "fd000000000000000000000000000001" + "00350000"},
		// the slot in host order (numgen and jhash write host-order u32).
		{"slot", slotKey([]byte{1, 2, 3, 4}, 1), "01020304" + hex.EncodeToString(native32(1))},
		{"v4 real", realValue(netip.MustParseAddrPort("10.97.11.2:8080")), "0a610b02" + "1f900000"},
		{"v6 real", realValue(netip.MustParseAddrPort("[fd97:11::2]:8080")), "fd970011000000000000000000000002" + "1f900000"},
	} {
		if got := hex.EncodeToString(tc.got); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if !bytes.Equal(native32(0x2000), []byte{0, 0x20, 0, 0}) && !bytes.Equal(native32(0x2000), []byte{0, 0, 0x20, 0}) {
		t.Fatal("native32 is neither byte order")
	}
}

func TestDesiredOwnershipAndDirty(t *testing.T) {
	d := newDesired()
	a := lbbed.Service("n", "a", "10.1.0.1", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1), lbbed.RealV4(2))
	b := lbbed.Service("n", "b", "10.1.0.1", 80, model.TCP, model.RoundRobin, lbbed.RealV4(3)) // same frontend
	c := lbbed.Service("n", "c", "10.1.0.2", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1))
	changed := d.update([]model.VirtualService{b, a, c})
	if len(changed) != 3 || d.errs["n/b/TCP/80"] == nil || d.errs["n/a/TCP/80"] != nil {
		t.Fatalf("changed %v, errs %v: the smallest key owns a frontend whatever the order", changed, d.errs)
	}
	if n := len(d.elems["fe4_inc_2"]) + len(d.elems["fe4_inc_1"]); n != 2 {
		t.Fatalf("frontends %d, want 2", n)
	}
	d.dirty = map[string]map[string]bool{}
	if changed := d.update([]model.VirtualService{b, a, c}); len(changed) != 0 || len(d.dirty) != 0 {
		t.Fatalf("an unchanged update changed %v, dirty %v", changed, d.dirty)
	}
	// a leaves: b inherits the frontend; only their elements are dirty.
	changed = d.update([]model.VirtualService{b, c})
	slices.Sort(changed)
	if !slices.Equal(changed, []string{"n/a/TCP/80", "n/b/TCP/80"}) || d.errs["n/b/TCP/80"] != nil {
		t.Fatalf("changed %v, errs %v", changed, d.errs)
	}
	cKey := string(frontendKey(6, netip.MustParseAddr("10.1.0.2"), 80))
	for set, keys := range d.dirty {
		for k := range keys {
			if k[:len(cKey)] == cKey {
				t.Fatalf("untouched service c is dirty in %s", set)
			}
		}
	}
	if got := d.elems["slots4"][string(slotKey(frontendKey(6, netip.MustParseAddr("10.1.0.1"), 80), 0))]; got != string(realValue(lbbed.RealV4(3).Endpoint())) {
		t.Fatalf("10.1.0.1:80 slot 0 → %x, want b's real", got)
	}
	if _, ok := d.elems["fe4_inc_2"]; ok {
		t.Fatal("selector set without members still wanted")
	}
}
