package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// iptablesTools runs the iptables tools: the seam between the iptables
// backend and the iptables binaries. The unit tests put an interpreter of
// restore scripts behind it (fake_test.go) to fail a restore half way or a
// save for good; the kernel tests and the agent run the real tools
// (execIPTables).
type iptablesTools interface {
	// save returns what iptables-save prints for the family: one table, or
	// every table when table is "".
	save(ctx context.Context, mode IPTablesMode, f Family, table string) ([]byte, error)
	// restore feeds script to iptables-restore --noflush: chains not named
	// in it, and built-in chains, keep their rules. Each table section is
	// one kernel transaction; a failing one leaves that table as it was
	// (and the sections before it applied).
	restore(ctx context.Context, mode IPTablesMode, f Family, script []byte) error
}

// execIPTables runs the iptables tools, behind an optional command prefix
// (tests use "ip netns exec NS" so the test process never changes
// namespace).
type execIPTables struct {
	prefix []string
}

func (e execIPTables) save(ctx context.Context, mode IPTablesMode, f Family, table string) ([]byte, error) {
	args := []string{}
	if table != "" {
		args = append(args, "-t", table)
	}
	return output(ctx, e.prefix, nil, iptablesTool(mode, f, "save"), args...)
}

func (e execIPTables) restore(ctx context.Context, mode IPTablesMode, f Family, script []byte) error {
	// -w: with the legacy backend, wait for the xtables lock other tools
	// (kube-proxy, Calico) hold instead of failing at once; nft ignores it.
	_, err := output(ctx, e.prefix, script, iptablesTool(mode, f, "restore"), "-w", "5", "--noflush")
	return err
}

// output runs name behind prefix and returns its standard output; the
// error carries its standard error.
func output(ctx context.Context, prefix []string, stdin []byte, name string, args ...string) ([]byte, error) {
	argv := append(slices.Clone(prefix), name)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// iptablesTool names the family's iptables tool of a backend, e.g.
// ip6tables-legacy-save; name "" is iptables itself (iptables-nft). Mode
// "" gives the plain names (whatever the system's alternatives point at).
func iptablesTool(mode IPTablesMode, f Family, name string) string {
	base := "iptables"
	if f == IPv6 {
		base = "ip6tables"
	}
	if mode != "" && mode != ModeAuto {
		base += "-" + string(mode)
	}
	if name != "" {
		base += "-" + name
	}
	return base
}

// readRules reads the family's nat and filter tables.
func readRules(ctx context.Context, t iptablesTools, mode IPTablesMode, f Family) (kernelRules, error) {
	out := kernelRules{}
	for _, name := range tables {
		b, err := t.save(ctx, mode, f, name)
		if err != nil {
			return nil, err
		}
		for n, st := range parseSave(b) {
			out[n] = st
		}
		if out[name] == nil {
			out[name] = &savedTable{chains: Table{}, builtin: Table{}}
		}
	}
	return out, nil
}

// savedTable is one table as iptables-save printed it, limited to what the
// agent cares about: its own chains and the built-in chains (for jumps).
type savedTable struct {
	chains  Table // EDGE- chains
	builtin Table // built-in chains
}

// kernelRules is one family's tables, keyed by table name.
type kernelRules map[string]*savedTable

func (k kernelRules) rules() int {
	n := 0
	for _, t := range k {
		for _, r := range t.chains {
			n += len(r)
		}
	}
	return n
}

// parseSave reads iptables-save output.
func parseSave(b []byte) map[string]*savedTable {
	out := map[string]*savedTable{}
	var cur *savedTable
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			cur = &savedTable{chains: Table{}, builtin: Table{}}
			out[line[1:]] = cur
		case cur == nil:
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				continue
			}
			if f[1] != "-" {
				cur.builtin[f[0]] = []string{}
			} else if strings.HasPrefix(f[0], ChainPrefix) {
				cur.chains[f[0]] = []string{}
			}
		case strings.HasPrefix(line, "-A "):
			line = clusterNodeForm(line)
			chain, _, _ := strings.Cut(line[3:], " ")
			if rules, ok := cur.chains[chain]; ok {
				cur.chains[chain] = append(rules, line)
			} else if rules, ok := cur.builtin[chain]; ok {
				cur.builtin[chain] = append(rules, line)
			}
		}
	}
	return out
}

// plan is one iptables-restore script and what it does.
type plan struct {
	script  bytes.Buffer
	lines   int // rule, chain and jump lines
	written int // chains (re)written
	deleted int // chains deleted
}

func (p *plan) empty() bool { return p.lines == 0 }

// diff writes the restore script that turns have into want: chains whose
// rules differ are redeclared (which flushes them under --noflush) and
// refilled, chains no longer wanted are flushed and deleted, missing jumps
// are inserted at the top of their built-in chain. Chains that match are not
// mentioned, so their rules (and statistic counters) stay untouched.
//
// only, when not nil, limits the comparison to those chains of the table
// (the ones a sync touched); nil compares everything (after reading the
// kernel).
func diff(want Ruleset, jumps []jump, have kernelRules) *plan {
	return diffOnly(want, jumps, have, nil)
}

func diffOnly(want Ruleset, jumps []jump, have kernelRules, only map[string]map[string]bool) *plan {
	p := &plan{}
	for _, t := range tables {
		h := have[t]
		if h == nil {
			h = &savedTable{chains: Table{}, builtin: Table{}}
		}
		var candidates []string
		if only == nil {
			candidates = sortedKeys(want[t])
			for c := range h.chains {
				if _, ok := want[t][c]; !ok {
					candidates = append(candidates, c)
				}
			}
		} else {
			candidates = sortedKeys(only[t])
		}
		slices.Sort(candidates)
		decl, rules, dels := p.diffChains(candidates, want[t], h)
		p.section(t, decl, jumpChanges(t, jumps, h), rules, dels)
	}
	return p
}

// diffChains compares the candidate chains: it returns the declarations of
// chains to (re)write or delete, the rules of those rewritten, and the
// deletions.
func (p *plan) diffChains(candidates []string, want Table, have *savedTable) (decl, rules, dels []string) {
	for _, c := range candidates {
		wr, wanted := want[c]
		old, exists := have.chains[c]
		switch {
		case wanted && exists && slices.Equal(old, wr):
		case wanted:
			decl = append(decl, ":"+c+" - [0:0]")
			rules = append(rules, wr...)
			p.written++
		case exists:
			decl = append(decl, ":"+c+" - [0:0]")
			dels = append(dels, "-X "+c)
			p.deleted++
		}
	}
	return decl, rules, dels
}

// jumpChanges inserts the wanted jumps of table t that are missing and
// deletes the unwanted ones that are present.
func jumpChanges(t string, jumps []jump, have *savedTable) []string {
	var ins []string
	for _, j := range allJumps {
		if j.table != t {
			continue
		}
		wanted, present := slices.Contains(jumps, j), slices.Contains(have.builtin[j.chain], j.rule)
		switch {
		case wanted && !present:
			ins = append(ins, "-I "+j.chain+" 1 "+strings.TrimPrefix(j.rule, "-A "+j.chain+" "))
		case !wanted && present:
			ins = append(ins, "-D"+strings.TrimPrefix(j.rule, "-A"))
		}
	}
	return ins
}

// section writes one table's part of the script (nothing when the
// declarations and jumps are empty: then nothing changes).
func (p *plan) section(t string, decl, ins, rules, dels []string) {
	if len(decl)+len(ins) == 0 {
		return
	}
	fmt.Fprintf(&p.script, "*%s\n", t)
	for _, part := range [][]string{decl, ins, rules, dels} {
		for _, l := range part {
			p.script.WriteString(l)
			p.script.WriteByte('\n')
		}
		p.lines += len(part)
	}
	p.script.WriteString("COMMIT\n")
}

// cleanupPlan removes every jump into an EDGE- chain from the built-in
// chains and deletes every EDGE- chain: exactly what the agent creates.
func cleanupPlan(have kernelRules) *plan {
	p := &plan{}
	for _, t := range tables {
		h := have[t]
		if h == nil {
			continue
		}
		var dels, decl, xs []string
		for _, c := range sortedKeys(h.builtin) {
			for _, r := range h.builtin[c] {
				if strings.Contains(r, " -j "+ChainPrefix) || strings.Contains(r, " -g "+ChainPrefix) {
					dels = append(dels, "-D"+strings.TrimPrefix(r, "-A"))
				}
			}
		}
		for _, c := range sortedKeys(h.chains) {
			decl = append(decl, ":"+c+" - [0:0]")
			xs = append(xs, "-X "+c)
			p.deleted++
		}
		p.section(t, decl, dels, nil, xs)
	}
	return p
}

// commit records in have that the kernel now holds want for the given
// chains (nil: all), after a successful restore.
func commit(have kernelRules, want Ruleset, jumps []jump, only map[string]map[string]bool) kernelRules {
	if only == nil || have == nil {
		return adopt(want, jumps)
	}
	for t, chains := range only {
		st := have[t]
		for c := range chains {
			if r, ok := want[t][c]; ok {
				st.chains[c] = r
			} else {
				delete(st.chains, c)
			}
		}
	}
	for _, st := range have {
		for c, rules := range st.builtin {
			st.builtin[c] = slices.DeleteFunc(rules, func(r string) bool {
				return slices.ContainsFunc(allJumps, func(j jump) bool { return j.rule == r })
			})
		}
	}
	for _, j := range jumps {
		st := have[j.table]
		st.builtin[j.chain] = append(st.builtin[j.chain], j.rule)
	}
	return have
}

// adopt records that the kernel now holds want (after a successful restore).
func adopt(want Ruleset, jumps []jump) kernelRules {
	out := kernelRules{}
	for _, t := range tables {
		st := &savedTable{chains: Table{}, builtin: Table{}}
		for c, r := range want[t] {
			st.chains[c] = r
		}
		for _, j := range jumps {
			if j.table == t {
				st.builtin[j.chain] = append(st.builtin[j.chain], j.rule)
			}
		}
		out[t] = st
	}
	return out
}
