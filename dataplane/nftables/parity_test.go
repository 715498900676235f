package nftables_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/dataplane/nftables"
	"github.com/arraynetworks/edgeagent/internal/lbbed"
	"github.com/arraynetworks/edgeagent/model"
)

// TestValidationParity: both backends accept and refuse the same services
// with the same reasons, so switching backends never changes what
// /status reports.
func TestValidationParity(t *testing.T) {
	ok := lbbed.Service("n", "ok", "10.1.0.1", 80, model.TCP, model.RoundRobin, lbbed.RealV4(1))
	cases := map[string]func(*model.VirtualService){
		"ok":          func(*model.VirtualService) {},
		"no vip":      func(vs *model.VirtualService) { vs.VIP = netip.Addr{} },
		"unspecified": func(vs *model.VirtualService) { vs.VIP = netip.MustParseAddr("0.0.0.0") },
		"port 0":      func(vs *model.VirtualService) { vs.Port = 0 },
		"sctp":        func(vs *model.VirtualService) { vs.Protocol = "SCTP" },
		"policy":      func(vs *model.VirtualService) { vs.Policy = "lc" },
		"family":      func(vs *model.VirtualService) { vs.Reals = []model.Real{lbbed.RealV6(1)} },
		"real port 0": func(vs *model.VirtualService) { vs.Reals[0].Port = 0 },
		"mapped vip":  func(vs *model.VirtualService) { vs.VIP = netip.MustParseAddr("::ffff:10.1.0.1") },
		"no reals":    func(vs *model.VirtualService) { vs.Reals = nil },
		"v6": func(vs *model.VirtualService) {
			vs.VIP = netip.MustParseAddr("fd00::1")
			vs.Reals = []model.Real{lbbed.RealV6(1)}
		},
		"all unhealty": func(vs *model.VirtualService) { vs.Reals[0].Healthy = false },
	}
	for name, mutate := range cases {
		vs := ok
		vs.Reals = append([]model.Real(nil), ok.Reals...)
		mutate(&vs)
		ipt := dataplane.Render([]model.VirtualService{vs}, dataplane.RenderOptions{}).Errors[vs.Key()]
		nft := nftables.RenderError(vs)
		if fmt.Sprint(ipt) != fmt.Sprint(nft) {
			t.Errorf("%s: iptables says %v, nftables %v", name, ipt, nft)
		}
	}
}
