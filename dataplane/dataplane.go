package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
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

	smu        sync.RWMutex // guards the two below, read by Programmed/Status
	programmed map[string]bool
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
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	h := opt.Netlink
	if h == nil {
		h = &netlink.Handle{}
	}
	run := runner{prefix: opt.CommandPrefix}
	d := &Dataplane{
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
	return d
}

// Routes returns the route table of the dataplane's namespace, for the BGP
// package's learned routes.
func (d *Dataplane) Routes() *RouteTable { return NewRouteTable(d.h) }

// Reconcile makes the kernel match s: VIP addresses, iptables chains,
// sysctls; then drops conntrack entries of UDP reals that left. Only
// eligible reals receive new connections. Services that cannot be rendered
// are left out (Programmed false, Rejected says why, logged once) without
// failing the sync; the error reports kernel failures only, after which the
// previous rules stay in force and calling Reconcile again retries.
func (d *Dataplane) Reconcile(ctx context.Context, s model.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	err := d.reconcile(ctx, s)
	d.metrics.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		d.metrics.errors.Inc()
		d.log.Error("sync failed", "err", err)
	}
	d.smu.Lock()
	d.st.LastSync = time.Now()
	d.st.LastError = ""
	if err != nil {
		d.st.LastError = err.Error()
	}
	d.smu.Unlock()
	return err
}

func (d *Dataplane) reconcile(ctx context.Context, s model.State) error {
	if err := d.load(ctx); err != nil {
		return err
	}
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
	var errs []error
	if d.want.v6 > 0 && d.v6Err == nil && d.sysctls[sysctlIPv6Forward] != "1" {
		if err := d.ensureSysctl(ctx, sysctlIPv6Forward, "1"); err != nil {
			errs = append(errs, err)
		}
	}

	// The VIPs to look at: all of them after (re)reading the link or a
	// failure, else only those this update touched.
	vips := d.want.vipDirty
	if d.refresh {
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
			errs = append(errs, fmt.Errorf("apply %s rules (%d chains written, %d deleted): %w", f, p.written, p.deleted, err))
			continue
		}
		d.ipt[f] = commit(d.ipt[f], d.want.rs[f], d.want.jumps, only)
		d.full[f] = false
		d.log.Debug("applied rules", "family", f.String(), "chains_written", p.written, "chains_deleted", p.deleted, "lines", p.lines)
	}

	wg.Wait()
	d.netlinkChanges += addN
	if addErr != nil {
		d.link = nil // re-read link and addresses next time
		errs = append(errs, addErr)
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
			errs = append(errs, err)
		}
	}
	d.refresh = len(failed) > 0 || addErr != nil || d.link == nil
	rules := 0
	for _, k := range d.ipt {
		rules += k.rules()
	}
	d.metrics.rules.Set(float64(rules))
	d.smu.Lock()
	d.st.Rules = rules
	d.st.InterfaceKind = d.kind
	d.st.Sysctls = maps.Clone(d.sysctls)
	d.smu.Unlock()
	return errors.Join(errs...)
}

// load reads whatever part of the kernel state is unknown: at start and
// after an error.
func (d *Dataplane) load(ctx context.Context) error {
	if d.link == nil {
		l, kind, n, err := ensureLink(d.h, d.opt.Interface)
		if err != nil {
			return err
		}
		d.netlinkChanges += n
		addrs, err := listVIPs(d.h, l)
		if err != nil {
			return err
		}
		d.link, d.kind, d.addrs = l, kind, addrs
		d.refresh = true
		if err := d.ensureSysctl(ctx, sysctlIPv4Forward, "1"); err != nil {
			d.link = nil
			return err
		}
		d.log.Info("VIP interface ready", "interface", d.opt.Interface, "kind", kind, "addresses", len(addrs))
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
			return fmt.Errorf("read %s rules: %w", f, err)
		}
		d.ipt[f] = k
		d.full[f] = true
	}
	return nil
}

func (d *Dataplane) ensureSysctl(ctx context.Context, name, value string) error {
	changed, err := d.sysctl.ensure(ctx, name, value)
	if err != nil {
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
// with the reason (their Programmed is false).
func (d *Dataplane) Rejected() map[string]error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.want == nil {
		return nil
	}
	return maps.Clone(d.want.errs)
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
	for _, f := range []Family{IPv4, IPv6} {
		k, err := d.run.save(ctx, f)
		if err != nil {
			if f == IPv4 {
				errs = append(errs, fmt.Errorf("read %s rules: %w", f, err))
			}
			continue
		}
		p := cleanupPlan(k)
		if p.empty() {
			continue
		}
		if err := d.run.restore(ctx, f, p.script.Bytes()); err != nil {
			errs = append(errs, fmt.Errorf("remove %s rules: %w", f, err))
			continue
		}
		d.log.Info("removed rules", "family", f.String(), "chains", p.deleted)
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
	rt := NewRouteTable(d.h)
	routes, err := rt.List()
	if err != nil {
		errs = append(errs, err)
	}
	for p := range routes {
		if err := rt.Delete(p); err != nil {
			errs = append(errs, err)
		}
	}
	// Whatever was believed applied is gone: start from the kernel again.
	d.link, d.addrs, d.applied, d.want = nil, nil, nil, nil
	d.ipt = map[Family]kernelRules{}
	d.refresh = true
	d.smu.Lock()
	d.programmed = map[string]bool{}
	d.smu.Unlock()
	return errors.Join(errs...)
}

type metrics struct {
	duration prometheus.Histogram
	errors   prometheus.Counter
	services prometheus.Gauge
	rules    prometheus.Gauge
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
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.errors, m.services, m.rules)
	}
	return m
}
