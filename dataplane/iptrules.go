package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/arraynetworks/edgeagent/model"
)

// The iptables backend's steps: one per family.
const (
	stepRulesV4 = "iptables-ipv4"
	stepRulesV6 = "iptables-ipv6"
)

func rulesStep(f Family) string {
	if f == IPv6 {
		return stepRulesV6
	}
	return stepRulesV4
}

// iptablesRules is the iptables rules backend: the agent's EDGE- chains in
// the nat and filter tables of both families, written by one
// iptables-restore per family and sync (see Render for the layout).
//
// It keeps what it believes the kernel holds. The first Plan (and the first
// after an error or Resync) reads iptables-save, so a restarted agent adopts
// existing rules; later ones diff against the last applied state, so a
// change of one service costs one small iptables-restore.
type iptablesRules struct {
	log   *slog.Logger
	tools iptablesTools
	// check asks the chosen backend's iptables about single rules
	// (go-iptables); nil where it cannot reach the namespace (a command
	// prefix).
	check ruleChecker
	ct    conntrackHandle
	ropt  RenderOptions

	// mode is the iptables backend, once chosen (ModeAuto: not yet).
	mode       IPTablesMode
	modeReason string
	announced  bool // the choice was logged
	// kernel is each family's rules as last read or applied; nil means
	// "read it again".
	kernel map[Family]kernelRules
	v6Err  error // ip6tables unusable
	// full[f]: the family's rules were just read from the kernel, so the
	// next diff compares every chain, not only the ones a sync touched.
	full map[Family]bool
	// The desired state, kept between syncs (nil until the first Plan).
	want *desired
	// applied: what the kernel holds per programmed service, for conntrack.
	applied map[string]Frontend
	// refresh: recompute every service's verdict and applied state at the
	// next Apply (after a read or a failure).
	refresh bool
	// From Plan, for Apply: the chains and services it changed.
	dirty   map[chainRef]bool
	changed []string

	restores int // iptables-restore runs, for tests and benchmarks
	lines    int // lines in them

	smu        sync.RWMutex // guards programmed, which Programmed reads during a sync
	programmed map[string]bool
}

func newIPTablesRules(mode IPTablesMode, ropt RenderOptions, tools iptablesTools, check ruleChecker, ct conntrackHandle, log *slog.Logger) *iptablesRules {
	r := &iptablesRules{
		log:        log,
		tools:      tools,
		check:      check,
		ct:         ct,
		ropt:       ropt,
		mode:       mode,
		kernel:     map[Family]kernelRules{},
		full:       map[Family]bool{},
		applied:    map[string]Frontend{},
		refresh:    true,
		programmed: map[string]bool{},
	}
	if mode != ModeAuto {
		r.modeReason = "set in the configuration (dataplane.iptablesMode)"
	}
	return r
}

func (r *iptablesRules) Steps() []string { return []string{stepRulesV4, stepRulesV6} }

// Plan chooses the iptables backend (once), reads the families' rules it
// does not know, and updates the desired state.
func (r *iptablesRules) Plan(ctx context.Context, services []model.VirtualService) RulesPlan {
	steps := map[string]error{}
	if r.chooseMode(ctx, steps) {
		r.read(ctx, steps)
	}
	r.update(services)
	p := RulesPlan{Steps: steps, VIPs: r.want.vipRefs, Touched: r.want.vipDirty, IPv6: r.want.v6 > 0 && r.v6Err == nil}
	r.want.vipDirty = map[netip.Prefix]bool{}
	return p
}

// chooseMode detects the node's iptables backend unless it is known, and
// reports whether it is.
func (r *iptablesRules) chooseMode(ctx context.Context, steps map[string]error) bool {
	if r.mode == ModeAuto {
		m, why, err := detectIPTablesMode(ctx, r.tools)
		if err != nil {
			steps[stepRulesV4] = err
			return false
		}
		r.mode, r.modeReason = m, why
	}
	if !r.announced {
		r.announced = true
		r.log.Info("iptables backend chosen", "mode", string(r.mode), "reason", r.modeReason, "version", r.version())
	}
	return true
}

// read reads the rules of each family not known, each a step of its own.
// ip6tables that cannot be read is not a failure: IPv6 services are then
// refused (Rejected), and the IPv4 side goes on.
func (r *iptablesRules) read(ctx context.Context, steps map[string]error) {
	for _, f := range []Family{IPv4, IPv6} {
		if r.kernel[f] != nil || (f == IPv6 && r.v6Err != nil) {
			continue
		}
		k, err := readRules(ctx, r.tools, r.mode, f)
		if err != nil {
			if f == IPv6 {
				r.v6Err = err
				r.log.Warn("ip6tables unusable; IPv6 virtual services will not be programmed", "err", err)
				continue
			}
			steps[stepRulesV4] = fmt.Errorf("read %s rules: %w", f, err)
			continue
		}
		r.kernel[f] = k
		r.full[f] = true
	}
}

// update makes the desired state match services and keeps, for Apply, the
// chains and services that changed.
func (r *iptablesRules) update(services []model.VirtualService) {
	if r.want == nil {
		r.want = newDesired(r.ropt)
		r.want.noIPv6 = r.v6Err
	}
	dirty, changed := r.want.update(services)
	// A service that cannot be rendered (a bad address, a frontend taken,
	// IPv6 missing) is left out and reported, once, when its verdict
	// changes; it is not a sync error, which the caller would retry.
	for _, key := range changed {
		if err := r.want.errs[key]; err != nil {
			r.log.Warn("virtual service not programmed", "key", key, "err", err)
		}
	}
	if r.dirty == nil {
		r.dirty, r.changed = dirty, changed
		return
	}
	// A Plan without Apply before it: keep both.
	maps.Copy(r.dirty, dirty)
	r.changed = append(r.changed, changed...)
}

// Apply writes each family's difference, then settles which services are
// programmed and drops the conntrack entries of UDP reals that left.
func (r *iptablesRules) Apply(ctx context.Context) map[string]error {
	steps := map[string]error{}
	failed := map[Family]bool{}
	for _, f := range []Family{IPv4, IPv6} {
		if f == IPv6 && r.v6Err != nil {
			continue
		}
		if r.kernel[f] == nil {
			// Its rules could not be read (Plan reported it): keep what
			// the kernel has and try again next time.
			failed[f] = true
			continue
		}
		read := r.full[f]
		err := r.applyFamily(ctx, f)
		if err == nil && read {
			if err = r.checkVisible(f); err != nil {
				r.kernel[f] = nil // read it again next time
			}
		}
		steps[rulesStep(f)] = err
		if err != nil {
			failed[f] = true
		}
	}
	if r.refresh || len(failed) > 0 {
		r.settleAll(failed)
	} else {
		r.settleChanged()
	}
	r.refresh = len(failed) > 0
	r.dirty, r.changed = nil, nil
	return steps
}

// applyFamily writes the family's difference in one iptables-restore.
func (r *iptablesRules) applyFamily(ctx context.Context, f Family) error {
	var only map[string]map[string]bool
	if !r.full[f] {
		only = map[string]map[string]bool{}
		for ref := range r.dirty {
			if ref.fam == f {
				if only[ref.table] == nil {
					only[ref.table] = map[string]bool{}
				}
				only[ref.table][ref.chain] = true
			}
		}
	}
	p := diffOnly(r.want.rs[f], r.want.jumps, r.kernel[f], only)
	if p.empty() {
		r.full[f] = false
		return nil
	}
	r.restores++
	r.lines += p.lines
	if err := r.tools.restore(ctx, r.mode, f, p.script.Bytes()); err != nil {
		// The failed table kept its previous rules (a table before it in
		// the script may have changed): read the kernel again before the
		// next attempt rather than guess.
		r.kernel[f] = nil
		return fmt.Errorf("apply %s rules (%d chains written, %d deleted): %w", f, p.written, p.deleted, err)
	}
	r.kernel[f] = commit(r.kernel[f], r.want.rs[f], r.want.jumps, only)
	r.full[f] = false
	r.log.Debug("applied rules", "family", f.String(), "chainsWritten", p.written, "chainsDeleted", p.deleted, "lines", p.lines)
	return nil
}

// settleAll recomputes every service's verdict and applied state. A family
// whose rules failed keeps its previous rules, so its services keep their
// previous verdict and applied state; the next sync recomputes them.
func (r *iptablesRules) settleAll(failed map[Family]bool) {
	old := r.programmedNow()
	programmed := map[string]bool{}
	applied := map[string]Frontend{}
	for key, s := range r.want.services {
		if s.err == nil && !failed[s.fam] {
			programmed[key] = true
			applied[key] = s.fe
		}
	}
	for key, fe := range r.applied {
		if failed[familyOf(fe.VIP)] {
			programmed[key] = old[key]
			applied[key] = fe
		}
	}
	r.dropStaleUDP(applied, r.changed)
	r.applied = applied
	r.smu.Lock()
	r.programmed = programmed
	r.smu.Unlock()
}

// settleChanged is the common case: only the services Plan changed.
func (r *iptablesRules) settleChanged() {
	cur := map[string]Frontend{}
	for _, key := range r.changed {
		if s, ok := r.want.services[key]; ok && s.err == nil {
			cur[key] = s.fe
		}
	}
	r.dropStaleUDP(cur, r.changed)
	r.smu.Lock()
	defer r.smu.Unlock()
	for _, key := range r.changed {
		if fe, ok := cur[key]; ok {
			r.applied[key] = fe
			r.programmed[key] = true
		} else {
			delete(r.applied, key)
			delete(r.programmed, key)
		}
	}
}

func (r *iptablesRules) dropStaleUDP(cur map[string]Frontend, changed []string) {
	for f, filters := range staleFilters(r.applied, cur, changed) {
		fam := netlink.InetFamily(netlink.FAMILY_V4)
		if f == IPv6 {
			fam = netlink.FAMILY_V6
		}
		n, err := r.ct.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...)
		if err != nil {
			r.log.Warn("delete conntrack entries of departed UDP reals", "family", f.String(), "err", err)
			continue
		}
		if n > 0 {
			r.log.Info("deleted conntrack entries of departed UDP reals", "family", f.String(), "entries", n)
		}
	}
}

func (r *iptablesRules) programmedNow() map[string]bool {
	r.smu.RLock()
	defer r.smu.RUnlock()
	return r.programmed
}

func (r *iptablesRules) Resync() {
	r.kernel = map[Family]kernelRules{}
	r.refresh = true
}

func (r *iptablesRules) Programmed() map[string]bool {
	r.smu.RLock()
	defer r.smu.RUnlock()
	return maps.Clone(r.programmed)
}

func (r *iptablesRules) Rejected() map[string]error {
	if r.want == nil {
		return nil
	}
	return maps.Clone(r.want.errs)
}

func (r *iptablesRules) Status() RulesStatus {
	st := RulesStatus{Backend: BackendIPTables, Services: len(r.applied), IPTablesModeReason: r.modeReason, Writes: r.restores}
	if r.mode != ModeAuto {
		st.IPTablesMode = r.mode
	}
	for _, k := range r.kernel {
		st.Rules += k.rules()
	}
	return st
}

// Cleanup removes every jump into an EDGE- chain and every EDGE- chain, in
// both families. Rules may sit in either iptables backend (a node that moved
// from one to the other): unless one is configured, both are cleaned.
func (r *iptablesRules) Cleanup(ctx context.Context) error {
	modes := []IPTablesMode{r.mode}
	if r.mode == ModeAuto {
		modes = []IPTablesMode{ModeNFT, ModeLegacy}
	}
	var errs, readErrs []error
	for _, m := range modes {
		for _, f := range []Family{IPv4, IPv6} {
			k, err := readRules(ctx, r.tools, m, f)
			if err != nil {
				if f == IPv4 {
					readErrs = append(readErrs, fmt.Errorf("read %s %s rules: %w", m, f, err))
				}
				continue
			}
			p := cleanupPlan(k)
			if p.empty() {
				continue
			}
			if err := r.tools.restore(ctx, m, f, p.script.Bytes()); err != nil {
				errs = append(errs, fmt.Errorf("remove %s %s rules: %w", m, f, err))
				continue
			}
			r.log.Info("removed rules", "mode", string(m), "family", f.String(), "chains", p.deleted)
		}
	}
	if len(readErrs) == len(modes) {
		errs = append(errs, readErrs...)
	}
	// Whatever was believed applied is gone: start from the kernel again.
	r.want = nil
	r.applied = map[string]Frontend{}
	r.kernel = map[Family]kernelRules{}
	r.refresh = true
	r.smu.Lock()
	r.programmed = map[string]bool{}
	r.smu.Unlock()
	return errors.Join(errs...)
}
