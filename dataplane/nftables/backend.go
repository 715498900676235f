package nftables

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	nft "github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/model"
)

// Options configure a Backend.
type Options struct {
	// Table is the name of the agent's inet table; default DefaultTable.
	Table string
	// Masquerade source-NATs load-balanced connections to the outgoing
	// interface's address, so replies come back through this node.
	Masquerade bool
	// ConnMark is the conntrack-mark bit set on load-balanced connections
	// (masquerade matches it); default DefaultConnMark.
	ConnMark uint32
	// NoLocalTraffic leaves out the nat output hook: processes on the node
	// cannot reach VIPs.
	NoLocalTraffic bool
	// NetNS is the network namespace to program; zero (or negative) means
	// the process's own. The Backend does not close it.
	NetNS  netns.NsHandle
	Logger *slog.Logger
}

// Backend programs virtual services into the agent's nftables table. It
// keeps what it believes the kernel holds: the first Sync (and the first
// after Resync or a failed write) reads the table and adopts it, writing
// only the difference, so a restarted agent with an unchanged desired state
// writes nothing; later syncs diff the changed services against what they
// last wrote and send one batch, one kernel transaction, which the kernel
// applies whole or not at all.
//
// The VIP addresses and sysctls are not its business (see the dataplane
// package); it programs the rules that DNAT, masquerade and reject, and
// deletes the conntrack entries of UDP flows whose real left.
type Backend struct {
	opt Options
	lay layoutOptions
	log *slog.Logger

	mu   sync.Mutex // serialises Sync, Resync, Cleanup, Close
	k    *kernel
	h    *netlink.Handle
	want *desired
	have *haveState // nil: read the kernel first
	// applied: what the kernel holds per programmed service, for conntrack.
	applied map[string]appliedService
	// pending: services that changed since the last successful write (a
	// failed sync changes want but not the kernel; the next success must
	// still report them).
	pending map[string]bool
	// planErr is the last Plan's error, reported by the Apply after it.
	planErr error

	smu        sync.RWMutex // guards the fields below
	programmed map[string]bool
	rejected   map[string]error // as of the last sync
	st         Status
}

// Status describes the backend for /status and tests.
type Status struct {
	Table string `json:"table"`
	// Elements in the table's sets and maps; SelectorRules the rules of
	// the services chain (one per selector in use).
	Elements      int `json:"elements"`
	SelectorRules int `json:"selectorRules"`
	// Batches is the number of kernel transactions written since start;
	// ElementWrites the element additions and deletions in them; Reads the
	// times the table was read whole.
	Batches       int       `json:"batches"`
	ElementWrites int       `json:"elementWrites"`
	Reads         int       `json:"reads"`
	LastSync      time.Time `json:"lastSync,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
	// Warnings are conditions that keep traffic from flowing which the
	// agent cannot fix without touching what is not its own, e.g. a base
	// chain at the forward hook with policy drop.
	Warnings []string `json:"warnings,omitempty"`
}

type appliedService struct {
	fe    model.Frontend
	reals []netip.AddrPort
}

// haveState is what the kernel holds, as read or last written.
type haveState struct {
	tableExists bool
	// rebuild: the fixed part (table, chains and their rules, the static
	// sets) is missing or differs: delete the table and write it anew, all
	// in the one transaction, so there is no moment without rules.
	rebuild bool
	elems   elemSet
	sets    map[string]bool   // selector sets present, with the right definition
	rules   map[string]uint64 // selector set → handle of its (correct) rule
	// staleRules and staleSets are in the table but not as the agent would
	// write them: deleted by the next batch.
	staleRules []uint64
	staleSets  []string
}

// New returns a backend; it touches the kernel only on the first Sync (or
// Cleanup).
func New(opt Options) *Backend {
	if opt.Table == "" {
		opt.Table = DefaultTable
	}
	if opt.ConnMark == 0 {
		opt.ConnMark = DefaultConnMark
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Backend{
		opt:        opt,
		lay:        layoutOptions{table: opt.Table, connMark: opt.ConnMark, masquerade: opt.Masquerade, noLocalTraffic: opt.NoLocalTraffic},
		log:        opt.Logger.With("component", "dataplane", "backend", "nftables"),
		applied:    map[string]appliedService{},
		pending:    map[string]bool{},
		programmed: map[string]bool{},
	}
	b.st.Table = "inet " + opt.Table
	return b
}

func (b *Backend) open() error {
	if b.k != nil {
		return nil
	}
	ns := netns.None()
	if b.opt.NetNS > 0 {
		ns = b.opt.NetNS
	}
	k, err := openKernel(ns, b.opt.Table)
	if err != nil {
		return err
	}
	h := &netlink.Handle{}
	if ns.IsOpen() {
		if h, err = netlink.NewHandleAt(ns); err != nil {
			k.close()
			return fmt.Errorf("netlink handle for conntrack: %w", err)
		}
	}
	b.k, b.h = k, h
	return nil
}

// Close releases the netlink sockets; the table stays as it is. A later
// call opens them again, in Options.NetNS, which must still be open.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.k == nil {
		return nil
	}
	err := b.k.close()
	b.h.Close()
	b.k, b.h, b.have = nil, nil, nil
	return err
}

// Sync makes the table match services. Only eligible reals receive new
// connections; a service without one is rejected (TCP reset, ICMP port
// unreachable). Services that cannot be programmed (bad address, frontend
// taken) are left out and reported by Rejected without failing the sync.
// The error reports kernel failures only; the previous state then stays in
// force and calling Sync again retries. Sync is Plan followed by Apply.
func (b *Backend) Sync(ctx context.Context, services []model.VirtualService) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.plan1(ctx, services)
	if err == nil {
		err = b.apply1(ctx)
	}
	b.finish(err)
	return err
}

// Plan is the first half of a sync: it brings the desired state to
// services, reading the table first when it is not known (at start, after
// Resync or a failed write), and writes nothing. It returns the VIPs the
// planned services use, those whose use changed since the previous Plan,
// and whether an IPv6 service is planned, so the dataplane can put the VIP
// addresses on while Apply writes. The returned maps belong to the Backend
// and stay unchanged until the next Plan. The error is the read's; Apply
// then writes nothing and reports it again.
func (b *Backend) Plan(ctx context.Context, services []model.VirtualService) (PlanResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.plan1(ctx, services)
	b.planErr = err
	pr := PlanResult{}
	if b.want != nil {
		pr = PlanResult{VIPs: b.want.vipRefs, Touched: b.want.vipDirty, IPv6: b.want.v6 > 0}
		b.want.vipDirty = map[netip.Prefix]bool{}
	}
	return pr, err
}

// PlanResult is what Plan tells the dataplane about the VIPs.
type PlanResult struct {
	// VIPs counts, per VIP (/32, /128), the planned services using it;
	// Touched holds those whose count may have changed since the previous
	// Plan.
	VIPs    map[netip.Prefix]int
	Touched map[netip.Prefix]bool
	// IPv6 is set when an IPv6 service is planned.
	IPv6 bool
}

// Apply is the second half of a sync: it writes what the last Plan decided
// in one batch (nothing when the kernel already holds it) and deletes the
// conntrack entries of UDP flows whose real left. It does not change what
// Plan returned.
func (b *Backend) Apply(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.planErr
	if err == nil {
		err = b.apply1(ctx)
	}
	b.planErr = nil
	b.finish(err)
	return err
}

// finish records a sync's outcome for Status and Rejected.
func (b *Backend) finish(err error) {
	b.smu.Lock()
	defer b.smu.Unlock()
	if b.want != nil {
		b.rejected = maps.Clone(b.want.errs)
	}
	b.st.LastSync = time.Now()
	b.st.LastError = ""
	if err != nil {
		b.st.LastError = err.Error()
	}
}

// plan1 reads the table when it is not known and updates the desired state.
// The desired state is updated even when the read fails, so what Plan
// reports about the VIPs follows the services.
func (b *Backend) plan1(ctx context.Context, services []model.VirtualService) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.want == nil {
		b.want = newDesired()
	}
	err := b.open()
	if err == nil && b.have == nil {
		// Read first, so the update below need not record what it
		// touches: the diff compares everything anyway.
		err = b.load()
	}
	for _, key := range b.want.update(services) {
		if err := b.want.errs[key]; err != nil {
			b.log.Warn("virtual service not programmed", "key", key, "err", err)
		}
		b.pending[key] = true
	}
	return err
}

// apply1 writes the planned state (see Apply).
func (b *Backend) apply1(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.open(); err != nil {
		return err
	}
	err := b.apply()
	if err != nil && ctx.Err() == nil {
		// The batch was refused whole, so the kernel is as it was; but what
		// it was may not be what we believed (someone deleted an element we
		// meant to replace). Read it and try once more.
		b.log.Warn("nftables write failed; reading the table and retrying", "err", err)
		b.have = nil
		err = b.apply()
	}
	if err != nil {
		b.have = nil
		return err
	}
	changed := slices.Collect(maps.Keys(b.pending))
	clear(b.pending)
	cur := map[string]appliedService{}
	for _, key := range changed {
		if e, ok := b.want.services[key]; ok && e.r.err == nil {
			cur[key] = appliedService{fe: e.r.fe, reals: e.r.reals}
		}
	}
	b.dropStaleUDP(cur, changed)
	b.smu.Lock()
	for _, key := range changed {
		if a, ok := cur[key]; ok {
			b.applied[key] = a
			b.programmed[key] = true
		} else {
			delete(b.applied, key)
			delete(b.programmed, key)
		}
	}
	b.smu.Unlock()
	return nil
}

// apply writes the difference between want and have (reading the kernel
// first when have is unknown) in one batch.
func (b *Backend) apply() error {
	if b.have == nil {
		if err := b.load(); err != nil {
			return err
		}
	}
	p := b.plan()
	if p.empty() {
		b.want.clean()
		return nil
	}
	if err := b.write(p); err != nil {
		return err
	}
	if err := b.commit(p); err != nil {
		return err
	}
	b.want.clean()
	b.smu.Lock()
	b.st.Batches++
	b.st.ElementWrites += p.elementWrites()
	b.st.Elements = b.have.elems.count()
	b.st.SelectorRules = len(b.have.rules)
	b.smu.Unlock()
	b.log.Debug("wrote nftables batch", "rebuild", p.rebuild, "elementAdds", p.adds(), "elementDeletes", p.dels(),
		"setsAdded", len(p.addSets), "setsDeleted", len(p.delSets), "rulesAdded", len(p.addRules), "rulesDeleted", len(p.delRules))
	return nil
}

// load reads the table and adopts it; the next diff compares everything.
func (b *Backend) load() error {
	snap, err := b.k.read()
	if err != nil {
		return fmt.Errorf("read table inet %s: %w", b.opt.Table, err)
	}
	b.have = b.adopt(snap)
	b.want.markAll()
	b.smu.Lock()
	b.st.Reads++
	b.st.Elements = b.have.elems.count()
	b.st.SelectorRules = len(b.have.rules)
	b.smu.Unlock()
	b.checkForward()
	return nil
}

// adopt turns a snapshot into haveState: the fixed part must match exactly
// (else the table is rebuilt in one transaction); selector sets and rules
// that match are kept, others are deleted; elements are taken as they are
// and diffed.
func (b *Backend) adopt(s *snapshot) *haveState {
	h := &haveState{tableExists: s.exists, elems: elemSet{}, sets: map[string]bool{}, rules: map[string]uint64{}}
	rebuild := func(why string, args ...any) *haveState {
		if s.exists {
			b.log.Warn("nftables table differs from the agent's layout; rewriting it in one transaction",
				append([]any{"table", b.opt.Table, "why", why}, args...)...)
		}
		h.rebuild = true
		h.elems = elemSet{}
		return h
	}
	if !s.exists {
		return rebuild("missing")
	}
	if s.flags != 0 {
		return rebuild("table flags set (dormant?)", "flags", s.flags)
	}
	defs := b.lay.chains()
	for name := range s.chains {
		if !slices.ContainsFunc(defs, func(c chainDef) bool { return c.name == name }) {
			return rebuild("unexpected chain", "chain", name)
		}
	}
	t := b.lay.tableRef()
	for _, def := range defs {
		have, ok := s.chains[def.name]
		if !ok || !sameChain(def.chain(t), have) {
			return rebuild("chain missing or its hook differs", "chain", def.name)
		}
		if def.name == chainServices {
			continue
		}
		rules := s.rules[def.name]
		if len(rules) != len(def.rules) {
			return rebuild("rules differ", "chain", def.name)
		}
		for i, r := range rules {
			if !sameExprs(def.rules[i], r.Exprs) {
				return rebuild("rules differ", "chain", def.name)
			}
		}
	}
	for _, name := range staticSets() {
		have, ok := s.sets[name]
		if !ok || !sameSet(b.lay.setDef(name), have) {
			return rebuild("set missing or its type differs", "set", name)
		}
		h.elems[name] = s.elems[name]
	}
	for name, set := range s.sets {
		if slices.Contains(staticSets(), name) {
			continue
		}
		if _, _, ok := parseSetName(name); ok && sameSet(b.lay.setDef(name), set) {
			h.sets[name] = true
			if m := s.elems[name]; len(m) > 0 {
				h.elems[name] = m
			}
			continue
		}
		h.staleSets = append(h.staleSets, name)
	}
	for _, r := range s.rules[chainServices] {
		name := strings.TrimPrefix(commentOf(r), ruleComment+" ")
		f, sel, ok := parseSetName(name)
		if ok && h.sets[name] && h.rules[name] == 0 && sameExprs(b.lay.selectorRule(f, sel), r.Exprs) {
			h.rules[name] = r.Handle
			continue
		}
		h.staleRules = append(h.staleRules, r.Handle)
	}
	return h
}

// plan is one batch.
type plan struct {
	rebuild  bool
	delRules []uint64
	delSets  []string
	addSets  []string
	addRules []string               // selector sets whose rule is added
	del      map[string][]string    // set → keys
	add      map[string][][2]string // set → key, value
}

func (p *plan) empty() bool {
	return !p.rebuild && len(p.delRules)+len(p.delSets)+len(p.addSets)+len(p.addRules)+len(p.del)+len(p.add) == 0
}

func (p *plan) adds() int {
	n := 0
	for _, e := range p.add {
		n += len(e)
	}
	return n
}

func (p *plan) dels() int {
	n := 0
	for _, e := range p.del {
		n += len(e)
	}
	return n
}

func (p *plan) elementWrites() int { return p.adds() + p.dels() }

// plan computes the batch that turns have into want.
func (b *Backend) plan() *plan {
	h := b.have
	p := &plan{rebuild: h.rebuild, del: map[string][]string{}, add: map[string][][2]string{}}
	haveSets, haveRules, haveElems := h.sets, h.rules, h.elems
	if h.rebuild {
		haveSets, haveRules, haveElems = map[string]bool{}, map[string]uint64{}, elemSet{}
	} else {
		p.delRules = slices.Clone(h.staleRules)
		p.delSets = slices.Clone(h.staleSets)
	}
	// Selector sets: wanted when they have members.
	wanted := map[string]bool{}
	for set := range b.want.elems {
		if _, _, ok := parseSetName(set); ok {
			wanted[set] = true
		}
	}
	for _, set := range slices.Sorted(maps.Keys(haveSets)) {
		if !wanted[set] {
			if hd, ok := haveRules[set]; ok {
				p.delRules = append(p.delRules, hd)
			}
			p.delSets = append(p.delSets, set)
		}
	}
	created := map[string]bool{}
	if h.rebuild {
		for _, set := range staticSets() {
			created[set] = true
		}
	}
	for _, set := range slices.Sorted(maps.Keys(wanted)) {
		if !haveSets[set] {
			p.addSets = append(p.addSets, set)
			created[set] = true
		}
		if _, ok := haveRules[set]; !ok {
			p.addRules = append(p.addRules, set)
		}
	}
	deleted := map[string]bool{}
	for _, set := range p.delSets {
		deleted[set] = true
	}
	diffKey := func(set, k string) {
		w, wok := b.want.elems[set][k]
		o, ook := haveElems[set][k]
		if created[set] {
			ook = false
		}
		switch {
		case wok && ook && w == o:
		case wok:
			if ook {
				p.del[set] = append(p.del[set], k)
			}
			p.add[set] = append(p.add[set], [2]string{k, w})
		case ook:
			p.del[set] = append(p.del[set], k)
		}
	}
	for set := range created {
		for k := range b.want.elems[set] {
			diffKey(set, k)
		}
	}
	if b.want.full {
		for set, m := range b.want.elems {
			if !created[set] && !deleted[set] {
				for k := range m {
					diffKey(set, k)
				}
			}
		}
		for set, m := range haveElems {
			if !created[set] && !deleted[set] {
				for k := range m {
					if _, wanted := b.want.elems[set][k]; !wanted {
						diffKey(set, k)
					}
				}
			}
		}
		return p
	}
	for set, keys := range b.want.dirty {
		if created[set] || deleted[set] {
			continue
		}
		for k := range keys {
			diffKey(set, k)
		}
	}
	return p
}

// write sends the plan as one batch: deletions of rules and sets first
// (a stale set may be re-created under its name), then new sets and
// rules, then elements.
func (b *Backend) write(p *plan) error {
	c, t := b.k.c, b.k.t
	if p.rebuild {
		if b.have.tableExists {
			c.DelTable(t)
		}
		c.AddTable(t)
		for _, name := range staticSets() {
			if err := c.AddSet(b.lay.setDef(name), nil); err != nil {
				return fmt.Errorf("add set %s: %w", name, err)
			}
		}
		for _, def := range b.lay.chains() {
			ch := c.AddChain(def.chain(t))
			for _, r := range def.rules {
				c.AddRule(&nft.Rule{Table: t, Chain: ch, Exprs: r, UserData: comment(ruleComment)})
			}
		}
	}
	services := &nft.Chain{Name: chainServices, Table: t}
	for _, hd := range p.delRules {
		if err := c.DelRule(&nft.Rule{Table: t, Chain: services, Handle: hd}); err != nil {
			return fmt.Errorf("delete rule %d: %w", hd, err)
		}
	}
	for _, set := range p.delSets {
		c.DelSet(&nft.Set{Table: t, Name: set})
	}
	for _, set := range p.addSets {
		if err := c.AddSet(b.lay.setDef(set), nil); err != nil {
			return fmt.Errorf("add set %s: %w", set, err)
		}
	}
	for _, set := range p.addRules {
		f, sel, _ := parseSetName(set)
		c.AddRule(&nft.Rule{Table: t, Chain: services, Exprs: b.lay.selectorRule(f, sel), UserData: comment(ruleComment + " " + set)})
	}
	for _, set := range slices.Sorted(maps.Keys(p.del)) {
		els := make([]nft.SetElement, len(p.del[set]))
		for i, k := range p.del[set] {
			els[i] = nft.SetElement{Key: []byte(k)}
		}
		if err := b.k.deleteElements(&nft.Set{Table: t, Name: set}, els); err != nil {
			return err
		}
	}
	for _, set := range slices.Sorted(maps.Keys(p.add)) {
		els := make([]nft.SetElement, len(p.add[set]))
		for i, kv := range p.add[set] {
			els[i] = nft.SetElement{Key: []byte(kv[0]), Val: []byte(kv[1])}
		}
		if err := b.k.addElements(&nft.Set{Table: t, Name: set}, els); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write table inet %s (%d element additions, %d deletions, %d rules added, %d deleted): %w",
			b.opt.Table, p.adds(), p.dels(), len(p.addRules), len(p.delRules), condensed{err})
	}
	return nil
}

// commit records a written plan in have.
func (b *Backend) commit(p *plan) error {
	h := b.have
	if p.rebuild {
		*h = haveState{tableExists: true, elems: elemSet{}, sets: map[string]bool{}, rules: map[string]uint64{}}
	}
	h.staleRules, h.staleSets = nil, nil
	for _, set := range p.delSets {
		delete(h.sets, set)
		delete(h.rules, set)
		delete(h.elems, set)
	}
	for _, set := range p.addSets {
		h.sets[set] = true
		delete(h.elems, set)
	}
	for set, keys := range p.del {
		for _, k := range keys {
			h.elems.delString(set, k)
		}
	}
	for set, kvs := range p.add {
		for _, kv := range kvs {
			h.elems.putString(set, kv[0], kv[1])
		}
	}
	if len(p.addRules) > 0 || p.rebuild {
		// The kernel assigned handles to the new rules; they are needed to
		// delete them later. One short dump of the services chain.
		rules, err := b.k.serviceRules()
		if err != nil {
			b.have = nil
			return err
		}
		h.rules = map[string]uint64{}
		for _, r := range rules {
			name := strings.TrimPrefix(commentOf(r), ruleComment+" ")
			if h.sets[name] {
				h.rules[name] = r.Handle
			}
		}
	}
	return nil
}

// checkForward looks for forward-hook base chains with policy drop and
// reports them (log, Status.Warnings).
func (b *Backend) checkForward() {
	drops, err := b.k.forwardDrops()
	var warnings []string
	if err != nil {
		warnings = []string{fmt.Sprintf("cannot check forward-hook chains: %v", err)}
	}
	for _, d := range drops {
		warnings = append(warnings, fmt.Sprintf("%s has policy drop at the forward hook: load-balanced connections to reals behind this node are dropped unless it accepts them (e.g. ct mark & %#x == %#x accept)",
			d, b.opt.ConnMark, b.opt.ConnMark))
	}
	b.smu.Lock()
	defer b.smu.Unlock()
	if !slices.Equal(warnings, b.st.Warnings) {
		for _, w := range warnings {
			b.log.Warn("dataplane problem", "err", w)
		}
	}
	b.st.Warnings = warnings
}

// Resync makes the next Sync read the table again and repair whatever
// differs from what the agent wants (someone flushed a chain, deleted
// elements, deleted the table), instead of trusting what it last wrote.
func (b *Backend) Resync() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.have = nil
}

// Programmed reports the virtual-service keys in the kernel.
func (b *Backend) Programmed() map[string]bool {
	b.smu.RLock()
	defer b.smu.RUnlock()
	return maps.Clone(b.programmed)
}

// ProgrammedCount is len(Programmed()) without the copy (it is read after
// every sync).
func (b *Backend) ProgrammedCount() int {
	b.smu.RLock()
	defer b.smu.RUnlock()
	return len(b.programmed)
}

// Rejected returns the services the last sync left out, with the reason.
// It never waits for a sync in progress.
func (b *Backend) Rejected() map[string]error {
	b.smu.RLock()
	defer b.smu.RUnlock()
	return maps.Clone(b.rejected)
}

// Status returns the backend's state.
func (b *Backend) Status() Status {
	b.smu.RLock()
	defer b.smu.RUnlock()
	st := b.st
	st.Warnings = slices.Clone(b.st.Warnings)
	return st
}

// Cleanup deletes the agent's table, which holds everything the backend
// creates. Nothing else is touched; running it again finds nothing to do.
func (b *Backend) Cleanup(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.open(); err != nil {
		return err
	}
	deleted, err := b.k.deleteTable()
	if err != nil {
		return err
	}
	if deleted {
		b.log.Info("removed nftables table", "table", "inet "+b.opt.Table)
	}
	b.want, b.have = nil, nil
	b.applied = map[string]appliedService{}
	b.smu.Lock()
	b.programmed, b.rejected = map[string]bool{}, nil
	b.smu.Unlock()
	return nil
}
