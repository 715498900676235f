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
	// ModeAuto detects the node's backend at start (detectIPTablesMode).
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

// detectIPTablesMode picks the backend the node already uses, the way
// kube-proxy's iptables-wrapper does: the backend whose mangle table holds
// kubelet's hint chain, else its canary chain, else the one holding more
// rules (nft on a tie, the default of current distributions); a backend
// whose tools do not run is never chosen. It returns the choice and a
// sentence saying why.
//
// It reads iptables-save output through the tools seam (with the command
// prefix tests use to reach a namespace) rather than through go-iptables:
// go-iptables runs the binary itself (no prefix), does not expose the mode
// it parses from --version, and would need one exec per chain to count
// rules.
func detectIPTablesMode(ctx context.Context, t iptablesTools) (IPTablesMode, string, error) {
	modes := []IPTablesMode{ModeNFT, ModeLegacy}
	saves := map[IPTablesMode]map[Family][]byte{}
	broken := map[IPTablesMode]error{} // the backend's IPv4 tools do not run
	for _, m := range modes {
		saves[m] = map[Family][]byte{}
		for _, f := range []Family{IPv4, IPv6} {
			b, err := t.save(ctx, m, f, "")
			if err != nil {
				if f == IPv4 {
					broken[m] = err
				}
				continue
			}
			saves[m][f] = b
		}
	}
	switch {
	case len(broken) == len(modes):
		return "", "", fmt.Errorf("detect iptables backend: neither backend's tools run: %w", errors.Join(broken[ModeNFT], broken[ModeLegacy]))
	case broken[ModeNFT] != nil:
		return ModeLegacy, fmt.Sprintf("only the legacy tools run (nft: %v)", broken[ModeNFT]), nil
	case broken[ModeLegacy] != nil:
		return ModeNFT, fmt.Sprintf("only the nft tools run (legacy: %v)", broken[ModeLegacy]), nil
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
