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

// runner runs the iptables tools, behind an optional command prefix (tests
// use "ip netns exec NS" so the test process never changes namespace).
type runner struct {
	prefix []string
	// mode picks the iptables backend's tools: ModeNFT runs
	// iptables-nft-restore, ModeLegacy iptables-legacy-restore; "" the
	// plain names (whatever the system's alternatives point at).
	mode IPTablesMode
}

func (r runner) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append(slices.Clone(r.prefix), name)
	argv = append(argv, args...)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

func (r runner) output(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := r.command(ctx, name, args...)
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

// tool names the family's iptables tool of the runner's backend, e.g.
// ip6tables-legacy-save.
func (r runner) tool(f Family, name string) string {
	base := "iptables-"
	if f == IPv6 {
		base = "ip6tables-"
	}
	if r.mode != "" {
		base += string(r.mode) + "-"
	}
	return base + name
}

// save reads the family's nat and filter tables.
func (r runner) save(ctx context.Context, f Family) (kernelRules, error) {
	out := kernelRules{}
	for _, t := range tables {
		b, err := r.output(ctx, nil, r.tool(f, "save"), "-t", t)
		if err != nil {
			return nil, err
		}
		for name, st := range parseSave(b) {
			out[name] = st
		}
		if out[t] == nil {
			out[t] = &savedTable{chains: Table{}, builtin: Table{}}
		}
	}
	return out, nil
}

// restore applies a script with --noflush: chains not named in it, and
// built-in chains, keep their rules. Each table section is one kernel
// transaction; a failing one leaves that table as it was.
func (r runner) restore(ctx context.Context, f Family, script []byte) error {
	// -w: with the legacy backend, wait for the xtables lock other tools
	// (kube-proxy, Calico) hold instead of failing at once; nft ignores it.
	_, err := r.output(ctx, script, r.tool(f, "restore"), "-w", "5", "--noflush")
	return err
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
		w := want[t]
		h := have[t]
		if h == nil {
			h = &savedTable{chains: Table{}, builtin: Table{}}
		}
		var candidates []string
		if only == nil {
			candidates = sortedKeys(w)
			for c := range h.chains {
				if _, ok := w[c]; !ok {
					candidates = append(candidates, c)
				}
			}
		} else {
			candidates = sortedKeys(only[t])
		}
		slices.Sort(candidates)
		var decl, rules, dels []string
		for _, c := range candidates {
			wr, wanted := w[c]
			old, exists := h.chains[c]
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
		var ins []string
		for _, j := range allJumps {
			if j.table != t {
				continue
			}
			wanted, present := slices.Contains(jumps, j), slices.Contains(h.builtin[j.chain], j.rule)
			switch {
			case wanted && !present:
				ins = append(ins, "-I "+j.chain+" 1 "+strings.TrimPrefix(j.rule, "-A "+j.chain+" "))
			case !wanted && present:
				ins = append(ins, "-D"+strings.TrimPrefix(j.rule, "-A"))
			}
		}
		if len(decl)+len(ins) == 0 {
			continue
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
	return p
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
		if len(dels)+len(decl) == 0 {
			continue
		}
		fmt.Fprintf(&p.script, "*%s\n", t)
		for _, part := range [][]string{decl, dels, xs} {
			for _, l := range part {
				p.script.WriteString(l)
				p.script.WriteByte('\n')
			}
			p.lines += len(part)
		}
		p.script.WriteString("COMMIT\n")
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
