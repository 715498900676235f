package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// IPTablesMode is the iptables backend the agent's rules go through.
type IPTablesMode string

// The iptables backends. Rules written through one are invisible to the
// other (iptables-nft programs nf_tables, iptables-legacy the x_tables
// kernel API), so the agent must use whatever the node's other iptables
// users (kubelet, kube-proxy, Calico) use.
const (
	// ModeAuto detects the node's backend at start (DetectIPTablesMode).
	ModeAuto   IPTablesMode = "auto"
	ModeNFT    IPTablesMode = "nft"
	ModeLegacy IPTablesMode = "legacy"
)

// ParseIPTablesMode reads the config's dataplane.iptablesMode ("" is auto).
func ParseIPTablesMode(s string) (IPTablesMode, error) {
	switch m := IPTablesMode(s); m {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeNFT, ModeLegacy:
		return m, nil
	}
	return "", fmt.Errorf("%q is not auto, nft or legacy", s)
}

// The chains kubelet creates in the backend it uses (KUBE-IPTABLES-HINT
// since Kubernetes 1.24, KUBE-KUBELET-CANARY before and alongside it).
// kube-proxy's iptables-wrapper reads the same two, in this order.
var kubeletChains = []string{"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"}

// DetectIPTablesMode picks the backend the node already uses, the way
// kube-proxy's iptables-wrapper does: the backend whose mangle table holds
// kubelet's hint chain, else its canary chain, else the one holding more
// rules (nft on a tie, the default of current distributions). It returns
// the choice and a sentence saying why.
//
// It reads iptables-save output through the runner (with the command prefix
// tests use to reach a namespace) rather than through go-iptables, which
// runs the binary itself and would need one exec per chain to count rules.
func DetectIPTablesMode(ctx context.Context, r runner) (IPTablesMode, string, error) {
	modes := []IPTablesMode{ModeNFT, ModeLegacy}
	saves := map[IPTablesMode]map[Family][]byte{}
	var errs []error
	for _, m := range modes {
		mr := runner{prefix: r.prefix, mode: m}
		saves[m] = map[Family][]byte{}
		for _, f := range []Family{IPv4, IPv6} {
			b, err := mr.output(ctx, nil, mr.tool(f, "save"))
			if err != nil {
				if f == IPv4 {
					errs = append(errs, err)
				}
				continue
			}
			saves[m][f] = b
		}
	}
	if len(saves[ModeNFT][IPv4]) == 0 && len(saves[ModeLegacy][IPv4]) == 0 && len(errs) == len(modes) {
		return "", "", fmt.Errorf("detect iptables backend: neither backend's tools run: %w", errors.Join(errs...))
	}
	for _, chain := range kubeletChains {
		for _, m := range modes {
			for _, f := range []Family{IPv4, IPv6} {
				if hasChain(saves[m][f], "mangle", chain) {
					return m, fmt.Sprintf("kubelet's %s chain is in the %s %s mangle table", chain, m, f), nil
				}
			}
		}
	}
	n := map[IPTablesMode]int{}
	for _, m := range modes {
		for _, f := range []Family{IPv4, IPv6} {
			n[m] += countRules(saves[m][f])
		}
	}
	if n[ModeLegacy] > n[ModeNFT] {
		return ModeLegacy, fmt.Sprintf("no kubelet chains; legacy holds %d rules, nft %d", n[ModeLegacy], n[ModeNFT]), nil
	}
	return ModeNFT, fmt.Sprintf("no kubelet chains; nft holds %d rules, legacy %d", n[ModeNFT], n[ModeLegacy]), nil
}

// hasChain reports whether iptables-save output declares chain in table.
func hasChain(save []byte, table, chain string) bool {
	in := false
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			in = line[1:] == table
		case in && strings.HasPrefix(line, ":"+chain+" "):
			return true
		}
	}
	return false
}

// countRules counts the rules (-A lines) in iptables-save output.
func countRules(save []byte) int {
	n := 0
	for line := range bytes.Lines(save) {
		if bytes.HasPrefix(line, []byte("-A ")) {
			n++
		}
	}
	return n
}
