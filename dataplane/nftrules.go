package dataplane

import (
	"context"
	"fmt"

	"github.com/arraynetworks/edgeagent/dataplane/nftables"
	"github.com/arraynetworks/edgeagent/model"
)

// Backend names a rules backend (config dataplane.backend).
type Backend string

// The rules backends.
const (
	// BackendIPTables: EDGE- chains through iptables-restore (the
	// default).
	BackendIPTables Backend = "iptables"
	// BackendNFTables: the data-only table inet edgeagent, by netlink.
	BackendNFTables Backend = "nftables"
)

// ParseBackend parses a config value; "" is the default, iptables.
func ParseBackend(s string) (Backend, error) {
	switch Backend(s) {
	case "", BackendIPTables:
		return BackendIPTables, nil
	case BackendNFTables:
		return BackendNFTables, nil
	}
	return "", fmt.Errorf("%q is not iptables or nftables", s)
}

// stepNFTables is the nftables backend's one step: its table, read and
// written in one transaction for both families.
const stepNFTables = "nftables"

// nftablesRules adapts the nftables backend (package nftables) to Rules.
type nftablesRules struct {
	b *nftables.Backend
}

// newNFTablesRules is the nftables backend the options describe.
func newNFTablesRules(opt Options) *nftablesRules {
	return &nftablesRules{b: nftables.New(nftables.Options{
		Masquerade:     opt.Masquerade,
		ConnMark:       opt.ConnMark,
		NoLocalTraffic: opt.NoLocalTraffic,
		NetNS:          opt.NetNS,
		Logger:         opt.Logger,
	})}
}

func (r *nftablesRules) Steps() []string { return []string{stepNFTables} }

func (r *nftablesRules) Plan(ctx context.Context, services []model.VirtualService) RulesPlan {
	p, err := r.b.Plan(ctx, services)
	return RulesPlan{Steps: map[string]error{stepNFTables: err}, VIPs: p.VIPs, Touched: p.Touched, IPv6: p.IPv6}
}

func (r *nftablesRules) Apply(ctx context.Context) map[string]error {
	return map[string]error{stepNFTables: r.b.Apply(ctx)}
}

func (r *nftablesRules) Resync()                     { r.b.Resync() }
func (r *nftablesRules) Programmed() map[string]bool { return r.b.Programmed() }
func (r *nftablesRules) Rejected() map[string]error  { return r.b.Rejected() }

func (r *nftablesRules) Status() RulesStatus {
	st := r.b.Status()
	return RulesStatus{
		Backend:  BackendNFTables,
		Services: r.b.ProgrammedCount(),
		Rules:    st.Elements,
		Table:    st.Table,
		Warnings: st.Warnings,
		Writes:   st.Batches,
	}
}

func (r *nftablesRules) Cleanup(ctx context.Context) error {
	if err := r.b.Cleanup(ctx); err != nil {
		return fmt.Errorf("remove nftables table: %w", err)
	}
	return nil
}
