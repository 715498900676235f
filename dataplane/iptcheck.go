package dataplane

import (
	"fmt"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// ruleChecker asks one iptables backend's own iptables tool about single
// rules. It is the sanity check of the chosen backend: rules that
// iptables-nft-restore wrote must be what iptables-nft (and so kube-proxy,
// Calico and an operator typing iptables) sees.
type ruleChecker interface {
	// version is the tool's version, e.g. "v1.8.9".
	version(mode IPTablesMode, f Family) (string, error)
	// exists reports whether the rule (arguments after the chain name, as
	// for iptables -C) is in table's chain.
	exists(mode IPTablesMode, f Family, table, chain string, rule []string) (bool, error)
}

// goIPTables is the ruleChecker of the agent binary: go-iptables, which
// finds the tool, reads its version and runs `iptables -C`.
//
// go-iptables runs the binary itself, in the process's own namespace, with
// no way to put `ip netns exec NS` before it: so it serves the agent
// (which runs in the namespace it programs, on the host or under `ip netns
// exec`, as in every test of the real binary) and not the in-process kernel
// tests, which reach their namespace through a command prefix and run
// without this check. Bulk work stays with iptables-save and
// iptables-restore (see docs/dataplane.md): go-iptables has one exec per
// rule and no transactions.
type goIPTables struct {
	mu    sync.Mutex
	tools map[string]*iptables.IPTables
}

func newGoIPTables() *goIPTables { return &goIPTables{tools: map[string]*iptables.IPTables{}} }

func (g *goIPTables) tool(mode IPTablesMode, f Family) (*iptables.IPTables, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	name := iptablesTool(mode, f, "")
	if t, ok := g.tools[name]; ok {
		return t, nil
	}
	proto := iptables.ProtocolIPv4
	if f == IPv6 {
		proto = iptables.ProtocolIPv6
	}
	// Timeout: wait at most 5 s for the xtables lock (legacy), as the
	// restores do.
	t, err := iptables.New(iptables.IPFamily(proto), iptables.Path(name), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	g.tools[name] = t
	return t, nil
}

func (g *goIPTables) version(mode IPTablesMode, f Family) (string, error) {
	t, err := g.tool(mode, f)
	if err != nil {
		return "", err
	}
	a, b, c := t.GetIptablesVersion()
	return fmt.Sprintf("v%d.%d.%d", a, b, c), nil
}

func (g *goIPTables) exists(mode IPTablesMode, f Family, table, chain string, rule []string) (bool, error) {
	t, err := g.tool(mode, f)
	if err != nil {
		return false, err
	}
	return t.Exists(table, chain, rule...)
}

// version is the chosen backend's iptables version, for the log: "" where
// it cannot be asked.
func (r *iptablesRules) version() string {
	if r.check == nil {
		return ""
	}
	v, err := r.check.version(r.mode, IPv4)
	if err != nil {
		r.log.Warn("cannot read the iptables version", "mode", string(r.mode), "err", err)
		return ""
	}
	return v
}

// checkVisible asks the chosen backend's iptables whether the jump into
// the agent's rules from nat PREROUTING is there: right after the rules of
// family f were read and made to match, so at start and at every resync.
// One exec; a whole-table check would be an iptables-save, which the sync
// has just done.
func (r *iptablesRules) checkVisible(f Family) error {
	if r.check == nil {
		return nil
	}
	var j jump
	for _, c := range r.want.jumps {
		if c.table == tableNat && c.chain == "PREROUTING" {
			j = c
		}
	}
	tool := iptablesTool(r.mode, f, "")
	ok, err := r.check.exists(r.mode, f, j.table, j.chain, ruleArgs(j))
	if err != nil {
		return fmt.Errorf("check %s rules with %s: %w", f, tool, err)
	}
	if !ok {
		return fmt.Errorf("%s does not see the jump from %s %s into %s that %s wrote: the iptables tools of the %s backend disagree",
			tool, j.table, j.chain, chainServices, iptablesTool(r.mode, f, "restore"), r.mode)
	}
	return nil
}

// ruleArgs splits a rule as iptables-save prints it ("-A CHAIN ...") into
// the arguments after the chain name. Quoted words (comments) stay whole;
// the agent's rules quote nothing else.
func ruleArgs(j jump) []string {
	rest := strings.TrimPrefix(j.rule, "-A "+j.chain+" ")
	var out []string
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" {
			break
		}
		if rest[0] == '"' {
			word, after, _ := strings.Cut(rest[1:], `"`)
			out = append(out, word)
			rest = after
			continue
		}
		word, after, _ := strings.Cut(rest, " ")
		out = append(out, word)
		rest = after
	}
	return out
}
