package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/status"
)

// DefaultInterface is the VIP interface's name unless configured.
const DefaultInterface = "edge-vip0"

// Options configure a Dataplane.
type Options struct {
	// Interface holds the VIPs; default DefaultInterface.
	Interface string
	// Masquerade source-NATs load-balanced traffic (config
	// dataplane.masquerade, default on in the config).
	Masquerade bool
	// ConnMark is the conntrack-mark bit of load-balanced connections
	// (see RenderOptions); default DefaultConnMark.
	ConnMark uint32
	// NoLocalTraffic leaves out the nat OUTPUT hook (see RenderOptions).
	NoLocalTraffic bool
	Logger         *slog.Logger
	// Registerer receives the dataplane metrics; nil registers nothing.
	Registerer prometheus.Registerer

	// Netlink works on another network namespace; nil means the process's
	// own (the agent runs under `ip netns exec` or on the host).
	Netlink *netlink.Handle
	// CommandPrefix is put before every iptables and sysctl command, e.g.
	// {"ip", "netns", "exec", NS}, so tests can target a namespace without
	// the test process changing its own.
	CommandPrefix []string
	// IPTablesMode is the iptables backend; "" or ModeAuto detects the
	// node's at the first sync (DetectIPTablesMode).
	IPTablesMode IPTablesMode
	// RouteMetric is the metric of the learned routes the BGP package
	// installs through Routes (see RouteTable); 0 means DefaultRouteMetric.
	RouteMetric uint32
}

// The steps of a sync. Each can fail on its own without keeping the others
// from running: rules still go in when a sysctl cannot be set, addresses
// still go on when one family's rules cannot be read.
const (
	stepInterface = "interface" // the VIP link exists (and is read)
	stepAddresses = "addresses" // VIP addresses on it
	stepSysctl    = "sysctl"    // forwarding switched on
	stepRulesV4   = "iptables-ipv4"
	stepRulesV6   = "iptables-ipv6"
)

var steps = []string{stepInterface, stepAddresses, stepSysctl, stepRulesV4, stepRulesV6}

func rulesStep(f Family) string {
	if f == IPv6 {
		return stepRulesV6
	}
	return stepRulesV4
}

// failure is a step failing since a time.
type failure struct {
	err   error
	since time.Time
}

// Dataplane owns the VIP interface, the EDGE- iptables chains and the
// forwarding sysctls of one network namespace. It implements agent.Dataplane.
//
// It keeps what it believes the kernel holds. The first Reconcile (and the
// first after an error) reads the kernel (link, addresses, iptables-save),
// so a restarted agent adopts existing state; later ones diff against the
// last applied state, so a change of one service costs one small
// iptables-restore. Reconcile is safe to call again after an error: nothing
// is assumed applied that was not.
type Dataplane struct {
	opt     Options
	log     *slog.Logger
	h       *netlink.Handle
	run     runner
	sysctl  sysctls
	metrics metrics

	mu sync.Mutex // serialises Reconcile and Cleanup
	// mode is the iptables backend, once chosen (ModeAuto: not yet).
	mode       IPTablesMode
	modeReason string
	// failing holds the steps whose last attempt failed.
	failing map[string]failure
	// sysctlsOK: forwarding was found on (or switched on) since the link
	// was last read; a resync checks again.
	sysctlsOK bool
	// Kernel state as last read or applied; nil means "read it again".
	link    netlink.Link
	kind    string
	addrs   map[netip.Prefix]bool
	ipt     map[Family]kernelRules
	v6Err   error // ip6tables unusable
	applied map[string]Frontend
	// The desired state, kept between syncs (nil until the first).
	want *desired
	// full[f]: the family's rules were just read from the kernel, so the
	// next diff compares every chain, not only the ones a sync touched.
	full map[Family]bool
	// refresh: recompute VIPs, verdicts and applied state (after a change
	// or a failure); vips, hasV6 and errs are their last values.
	refresh        bool
	vips           map[netip.Prefix]bool
	hasV6          bool
	errs           map[string]error
	sysctls        map[string]string
	restores       int // iptables-restore runs, for tests and benchmarks
	lines          int // lines in them
	netlinkChanges int

	smu        sync.RWMutex // guards the three below, read by Programmed/Rejected/Status
	programmed map[string]bool
	rejected   map[string]error
	st         status.Dataplane
}

// New returns a dataplane; it touches the kernel only on the first
// Reconcile (or Cleanup).
func New(opt Options) *Dataplane {
	if opt.Interface == "" {
		opt.Interface = DefaultInterface
	}
	if opt.ConnMark == 0 {
		opt.ConnMark = DefaultConnMark
	}
	if opt.IPTablesMode == "" {
		opt.IPTablesMode = ModeAuto
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	h := opt.Netlink
	if h == nil {
		h = &netlink.Handle{}
	}
	run := runner{prefix: opt.CommandPrefix}
	mode, reason := opt.IPTablesMode, ""
	if mode != ModeAuto {
		run.mode, reason = mode, "set in the configuration (dataplane.iptablesMode)"
	}
	d := &Dataplane{
		mode:       mode,
		modeReason: reason,
		failing:    map[string]failure{},
		opt:        opt,
		log:        opt.Logger.With("component", "dataplane"),
		h:          h,
		run:        run,
		sysctl:     sysctls{run: run},
		metrics:    newMetrics(opt.Registerer),
		ipt:        map[Family]kernelRules{},
		full:       map[Family]bool{},
		refresh:    true,
		applied:    map[string]Frontend{},
		sysctls:    map[string]string{},
		programmed: map[string]bool{},
	}
	d.st = status.Dataplane{Interface: opt.Interface, Masquerade: opt.Masquerade}
	if mode != ModeAuto {
		d.metrics.mode.WithLabelValues(string(mode)).Set(1)
		d.st.IPTablesMode, d.st.IPTablesModeReason = string(mode), reason
	}
	return d
}

// Routes returns the route table of the dataplane's namespace, for the BGP
// package's learned routes, at the configured metric.
func (d *Dataplane) Routes() *RouteTable { return NewRouteTable(d.h, d.opt.RouteMetric) }

// Reconcile makes the kernel match s: VIP addresses, iptables chains,
// sysctls; then drops conntrack entries of UDP reals that left. Only
// eligible reals receive new connections. Services that cannot be rendered
// are left out (Programmed false, Rejected says why, logged once) without
// failing the sync; the error reports kernel failures only, after which the
// previous rules stay in force and calling Reconcile again retries. A step
// that fails (the VIP interface, a sysctl, one family's rules) does not keep
// the others from running; Status says which steps fail and since when.
func (d *Dataplane) Reconcile(ctx context.Context, s model.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	res := map[string]error{}
	err := d.reconcile(ctx, s, res)
	d.metrics.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		d.metrics.errors.Inc()
		d.log.Error("sync failed", "err", err)
	}
	d.record(start, res)
	d.smu.Lock()
	d.st.LastSync = time.Now()
	d.st.LastError = ""
	if err != nil {
		d.st.LastError = err.Error()
	}
	d.smu.Unlock()
	return err
}

// record notes the outcome of the steps a sync attempted (nil: it worked);
// steps it did not attempt keep their state.
func (d *Dataplane) record(now time.Time, res map[string]error) {
	for step, err := range res {
		if err == nil {
			delete(d.failing, step)
			continue
		}
		f, ok := d.failing[step]
		if !ok {
			f.since = now
		}
		f.err = err
		d.failing[step] = f
	}
	var fails []status.DataplaneFailure
	var since time.Time
	for _, step := range steps {
		f, ok := d.failing[step]
		d.metrics.failing.WithLabelValues(step).Set(b2f(ok))
		if !ok {
			continue
		}
		fails = append(fails, status.DataplaneFailure{Step: step, Error: f.err.Error(), Since: f.since})
		if since.IsZero() || f.since.Before(since) {
			since = f.since
		}
	}
	d.smu.Lock()
	d.st.Failures, d.st.FailingSince = fails, since
	d.smu.Unlock()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (d *Dataplane) reconcile(ctx context.Context, s model.State, res map[string]error) error {
	var errs []error
	// step records a step's outcome; a step attempted twice in one sync
	// (the forwarding sysctls) fails if either attempt did.
	step := func(name string, err error) {
		if err != nil {
			errs = append(errs, err)
			res[name] = errors.Join(res[name], err)
		} else if _, seen := res[name]; !seen {
			res[name] = nil
		}
	}
	d.load(ctx, step)
	if d.want == nil {
		d.want = newDesired(RenderOptions{Masquerade: d.opt.Masquerade, ConnMark: d.opt.ConnMark, NoLocalTraffic: d.opt.NoLocalTraffic})
		d.want.noIPv6 = d.v6Err
	}
	dirty, changed := d.want.update(s.Services)
	// A service that cannot be rendered (a bad address, a frontend taken,
	// IPv6 missing) is left out and reported, once, when its verdict
	// changes; it is not a sync error, which the caller would retry.
	for _, key := range changed {
		if err := d.want.errs[key]; err != nil {
			d.log.Warn("virtual service not programmed", "key", key, "err", err)
		}
	}
	if d.want.v6 > 0 && d.v6Err == nil && d.sysctls[sysctlIPv6Forward] != "1" {
		step(stepSysctl, d.ensureSysctl(ctx, sysctlIPv6Forward, "1"))
	}

	// The VIPs to look at: all of them after (re)reading the link or a
	// failure, else only those this update touched.
	vips := d.want.vipDirty
	if d.link == nil {
		// The interface step failed: addresses wait for the next sync,
		// which (d.refresh stays set) looks at every VIP again.
		vips = nil
	} else if d.refresh {
		vips = map[netip.Prefix]bool{}
		for p := range d.want.vipRefs {
			vips[p] = true
		}
		for p := range d.addrs {
			vips[p] = true
		}
	}
	d.want.vipDirty = map[netip.Prefix]bool{}
	wantVIP := func(p netip.Prefix) bool { return d.want.vipRefs[p] > 0 }

	// New VIPs go on while the rules are being applied: DNAT happens in
	// PREROUTING, before the address matters, and the two are independent
	// kernel work (10,000 addresses take about as long as the restore).
	var wg sync.WaitGroup
	var addN int
	var addErr error
	if len(vips) > 0 {
		wg.Go(func() { addN, addErr = addVIPs(d.h, d.link, vips, wantVIP, d.addrs) })
	}

	failed := map[Family]bool{}
	for _, f := range []Family{IPv4, IPv6} {
		if f == IPv6 && d.v6Err != nil {
			continue
		}
		if d.ipt[f] == nil {
			// Its rules could not be read (load reported it): keep
			// what the kernel has and try again next time.
			failed[f] = true
			continue
		}
		var only map[string]map[string]bool
		if !d.full[f] {
			only = map[string]map[string]bool{}
			for ref := range dirty {
				if ref.fam == f {
					if only[ref.table] == nil {
						only[ref.table] = map[string]bool{}
					}
					only[ref.table][ref.chain] = true
				}
			}
		}
		p := diffOnly(d.want.rs[f], d.want.jumps, d.ipt[f], only)
		if p.empty() {
			d.full[f] = false
			continue
		}
		d.restores++
		d.lines += p.lines
		if err := d.run.restore(ctx, f, p.script.Bytes()); err != nil {
			// The failed table kept its previous rules; read the kernel
			// again before the next attempt rather than guess.
			d.ipt[f] = nil
			failed[f] = true
			step(rulesStep(f), fmt.Errorf("apply %s rules (%d chains written, %d deleted): %w", f, p.written, p.deleted, err))
			continue
		}
		step(rulesStep(f), nil)
		d.ipt[f] = commit(d.ipt[f], d.want.rs[f], d.want.jumps, only)
		d.full[f] = false
		d.log.Debug("applied rules", "family", f.String(), "chains_written", p.written, "chains_deleted", p.deleted, "lines", p.lines)
	}

	wg.Wait()
	d.netlinkChanges += addN
	if addErr != nil {
		d.link = nil // re-read link and addresses next time
		step(stepAddresses, addErr)
	}
	if d.refresh || len(failed) > 0 || addErr != nil {
		// A family whose restore failed keeps its previous rules, so its
		// services keep their previous verdict and applied state; the next
		// sync recomputes everything.
		old := d.programmedNow()
		programmed := map[string]bool{}
		applied := map[string]Frontend{}
		for key, r := range d.want.services {
			if r.err == nil && !failed[r.fam] {
				programmed[key] = true
				applied[key] = r.fe
			}
		}
		for key, fe := range d.applied {
			if failed[familyOf(fe.VIP)] {
				programmed[key] = old[key]
				applied[key] = fe
			}
		}
		d.dropStaleUDP(applied, changed)
		d.applied = applied
		d.smu.Lock()
		d.programmed = programmed
		d.smu.Unlock()
	} else {
		// The common case: only the changed services.
		cur := map[string]Frontend{}
		for _, key := range changed {
			if r, ok := d.want.services[key]; ok && r.err == nil {
				cur[key] = r.fe
			}
		}
		d.dropStaleUDP(cur, changed)
		d.smu.Lock()
		for _, key := range changed {
			if fe, ok := cur[key]; ok {
				d.applied[key] = fe
				d.programmed[key] = true
			} else {
				delete(d.applied, key)
				delete(d.programmed, key)
			}
		}
		d.smu.Unlock()
	}
	d.metrics.services.Set(float64(len(d.applied)))
	// VIPs come off only once no rule can still be using them.
	if len(failed) == 0 && addErr == nil && len(vips) > 0 {
		n, err := removeVIPs(d.h, d.link, vips, wantVIP, d.addrs)
		d.netlinkChanges += n
		if err != nil {
			d.link = nil
			addErr = err
			step(stepAddresses, err)
		}
	}
	if addErr == nil && len(vips) > 0 {
		step(stepAddresses, nil)
	}
	d.refresh = len(failed) > 0 || addErr != nil || d.link == nil
	rules := 0
	for _, k := range d.ipt {
		rules += k.rules()
	}
	d.metrics.rules.Set(float64(rules))
	d.smu.Lock()
	d.rejected = maps.Clone(d.want.errs)
	d.st.Rules = rules
	d.st.InterfaceKind = d.kind
	d.st.Sysctls = maps.Clone(d.sysctls)
	d.st.IPTablesMode, d.st.IPTablesModeReason = string(d.mode), d.modeReason
	d.smu.Unlock()
	return errors.Join(errs...)
}

// load reads whatever part of the kernel state is unknown: at start and
// after an error. Each part is a step of its own: one that fails is
// reported through step and retried at the next sync, and the others still
// run.
func (d *Dataplane) load(ctx context.Context, step func(string, error)) {
	if d.mode == ModeAuto {
		m, why, err := DetectIPTablesMode(ctx, d.run)
		if err != nil {
			step(stepRulesV4, err)
			return
		}
		d.mode, d.modeReason, d.run.mode = m, why, m
		d.metrics.mode.WithLabelValues(string(m)).Set(1)
		d.log.Info("iptables backend chosen", "mode", string(m), "reason", why)
	}
	if d.link == nil {
		d.sysctlsOK = false
		l, kind, n, err := ensureLink(d.h, d.opt.Interface)
		d.netlinkChanges += n
		var addrs map[netip.Prefix]bool
		if err == nil {
			addrs, err = listVIPs(d.h, l)
		}
		if err != nil {
			step(stepInterface, err)
		} else {
			step(stepInterface, nil)
			d.link, d.kind, d.addrs = l, kind, addrs
			d.refresh = true
			d.log.Info("VIP interface ready", "interface", d.opt.Interface, "kind", kind, "addresses", len(addrs))
		}
	}
	// Forwarding is checked whenever the link is read (start, resync,
	// after a failure) and retried until it is on: without it DNATed
	// packets are dropped, but the rules and addresses are still worth
	// having in place for the moment it comes back.
	if !d.sysctlsOK {
		// IPv6 forwarding, switched on once an IPv6 service exists, is
		// checked again by the sync that follows.
		delete(d.sysctls, sysctlIPv6Forward)
		err := d.ensureSysctl(ctx, sysctlIPv4Forward, "1")
		step(stepSysctl, err)
		d.sysctlsOK = err == nil
	}
	for _, f := range []Family{IPv4, IPv6} {
		if d.ipt[f] != nil || (f == IPv6 && d.v6Err != nil) {
			continue
		}
		k, err := d.run.save(ctx, f)
		if err != nil {
			if f == IPv6 {
				d.v6Err = err
				d.log.Warn("ip6tables unusable; IPv6 virtual services will not be programmed", "err", err)
				continue
			}
			step(stepRulesV4, fmt.Errorf("read %s rules: %w", f, err))
			continue
		}
		d.ipt[f] = k
		d.full[f] = true
	}
}

func (d *Dataplane) ensureSysctl(ctx context.Context, name, value string) error {
	cur, changed, err := d.sysctl.ensure(ctx, name, value)
	if err != nil {
		if cur != "" {
			d.sysctls[name] = cur // what the node has instead
		}
		return err
	}
	if changed {
		d.netlinkChanges++
		d.log.Info("sysctl set", "name", name, "value", value)
	}
	d.sysctls[name] = value
	return nil
}

func (d *Dataplane) dropStaleUDP(cur map[string]Frontend, changed []string) {
	for f, filters := range staleFilters(d.applied, cur, changed) {
		fam := netlink.InetFamily(netlink.FAMILY_V4)
		if f == IPv6 {
			fam = netlink.FAMILY_V6
		}
		n, err := d.h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...)
		if err != nil {
			d.log.Warn("delete conntrack entries of departed UDP reals", "family", f.String(), "err", err)
			continue
		}
		if n > 0 {
			d.log.Info("deleted conntrack entries of departed UDP reals", "family", f.String(), "entries", n)
		}
	}
}

func (d *Dataplane) programmedNow() map[string]bool {
	d.smu.RLock()
	defer d.smu.RUnlock()
	return d.programmed
}

// Resync makes the next Reconcile read the kernel again (link, addresses,
// iptables-save) and repair whatever differs, instead of trusting what it
// last applied: for a periodic check against someone else flushing the
// agent's chains or deleting its addresses. At 10,000 services the re-read
// costs about two seconds (docs/benchmarks/dataplane.md, BenchmarkAdopt10k).
func (d *Dataplane) Resync() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.link = nil
	d.ipt = map[Family]kernelRules{}
	d.refresh = true
}

// Rejected returns the services left out because they cannot be rendered,
// with the reason (their Programmed is false), as of the last sync. It
// never waits for a sync in progress (an iptables-restore of 10,000
// services takes seconds), so /status and /readyz answer at once.
func (d *Dataplane) Rejected() map[string]error {
	d.smu.RLock()
	defer d.smu.RUnlock()
	return maps.Clone(d.rejected)
}

// Programmed reports the virtual-service keys whose rules are in the kernel.
func (d *Dataplane) Programmed() map[string]bool {
	d.smu.RLock()
	defer d.smu.RUnlock()
	return maps.Clone(d.programmed)
}

// Status describes the kernel side for /status.
func (d *Dataplane) Status() *status.Dataplane {
	d.smu.RLock()
	defer d.smu.RUnlock()
	st := d.st
	st.Sysctls = maps.Clone(d.st.Sysctls)
	return &st
}

// Cleanup removes exactly what the agent creates: every jump into an EDGE-
// chain and every EDGE- chain (both families), the VIP interface, and every
// route with the agent's protocol number. Running it again finds nothing to
// do. Sysctls are left as they are.
func (d *Dataplane) Cleanup(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	// Rules may sit in either backend (a node that moved from one to the
	// other): unless one is configured, clean both.
	modes := []IPTablesMode{d.mode}
	if d.mode == ModeAuto {
		modes = []IPTablesMode{ModeNFT, ModeLegacy}
	}
	var readErrs []error
	for _, m := range modes {
		r := runner{prefix: d.run.prefix, mode: m}
		for _, f := range []Family{IPv4, IPv6} {
			k, err := r.save(ctx, f)
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
			if err := r.restore(ctx, f, p.script.Bytes()); err != nil {
				errs = append(errs, fmt.Errorf("remove %s %s rules: %w", m, f, err))
				continue
			}
			d.log.Info("removed rules", "mode", string(m), "family", f.String(), "chains", p.deleted)
		}
	}
	if len(readErrs) == len(modes) {
		errs = append(errs, readErrs...)
	}
	if l, err := d.h.LinkByName(d.opt.Interface); err == nil {
		if l.Type() != KindDummy && l.Type() != KindBridge {
			errs = append(errs, fmt.Errorf("interface %s has type %q: not the agent's, left alone", d.opt.Interface, l.Type()))
		} else if ports, err := bridgePorts(d.h, l); err != nil || ports > 0 {
			errs = append(errs, fmt.Errorf("interface %s has ports (%d) or could not be checked (%v): left alone", d.opt.Interface, ports, err))
		} else if err := d.h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", d.opt.Interface, err))
		} else {
			d.log.Info("removed VIP interface", "interface", d.opt.Interface)
		}
	}
	rt := NewRouteTable(d.h, d.opt.RouteMetric)
	routes, err := rt.listAll()
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range routes {
		if err := rt.h.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
		}
	}
	// Whatever was believed applied is gone: start from the kernel again.
	d.link, d.addrs, d.applied, d.want = nil, nil, nil, nil
	d.ipt = map[Family]kernelRules{}
	d.refresh = true
	d.smu.Lock()
	d.programmed, d.rejected = map[string]bool{}, nil
	d.smu.Unlock()
	return errors.Join(errs...)
}

type metrics struct {
	duration prometheus.Histogram
	errors   prometheus.Counter
	services prometheus.Gauge
	rules    prometheus.Gauge
	failing  *prometheus.GaugeVec
	mode     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgeagent_dataplane_sync_duration_seconds",
			Help:    "Time one dataplane sync (addresses, iptables-restore, conntrack) took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_dataplane_sync_errors_total",
			Help: "Dataplane syncs that returned an error.",
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_virtual_services",
			Help: "Virtual services programmed into the kernel.",
		}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_rules",
			Help: "iptables rules in the agent's EDGE- chains (both families).",
		}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_step_failing",
			Help: "1 while the step of the dataplane sync (interface, addresses, sysctl, iptables-ipv4, iptables-ipv6) fails; /status says why.",
		}, []string{"step"}),
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_iptables_mode",
			Help: "1 for the iptables backend (nft or legacy) the agent's rules go through.",
		}, []string{"mode"}),
	}
	for _, s := range steps {
		m.failing.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.errors, m.services, m.rules, m.failing, m.mode)
	}
	return m
}
