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
	"github.com/vishvananda/netns"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/model"
)

// DefaultInterface is the VIP interface's name unless configured (the
// configuration's default).
const DefaultInterface = config.DefaultVIPInterface

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
	// node's at the first sync (detectIPTablesMode).
	IPTablesMode IPTablesMode
	// RouteMetric is the metric of the learned routes the BGP package
	// installs through Routes (see RouteTable); 0 means DefaultRouteMetric.
	RouteMetric uint32
	// Backend chooses the rules backend built from the options above:
	// "" or BackendIPTables (Masquerade, ConnMark, NoLocalTraffic,
	// CommandPrefix, IPTablesMode), BackendNFTables (Masquerade, ConnMark,
	// NoLocalTraffic, NetNS). The other one is built too, for Cleanup and
	// for removing its leftovers once the chosen one has programmed
	// everything (a node switching backends; see removeOther).
	Backend Backend
	// NetNS is the network namespace the nftables backend programs, the
	// one Netlink works on; zero means the process's own.
	NetNS netns.NsHandle
	// Rules is the rules backend; nil means the one Backend names. Another
	// backend is configured on its own and must work on the same network
	// namespace as Netlink; it has no other backend to clean up after.
	Rules Rules
}

// Dataplane owns the VIP interface and its addresses, the forwarding
// sysctls and the learned routes of one network namespace, and drives a
// rules backend (Rules; iptables by default) for the load balancing. It
// implements agent.Dataplane.
//
// It keeps what it believes the kernel holds. The first Reconcile (and the
// first after an error or Resync) reads the kernel (link, addresses, the
// backend's rules), so a restarted agent adopts existing state; later ones
// diff against the last applied state, so a change of one service costs one
// small write. Reconcile is safe to call again after an error: nothing is
// assumed applied that was not.
type Dataplane struct {
	opt    Options
	log    *slog.Logger
	links  linkHandle
	routes routeHandle
	sysctl sysctlIO
	rules  Rules
	other  Rules
	// otherGone: the other backend's objects were removed (or found
	// absent) since start or the last Resync.
	otherGone bool
	otherErr  error
	metrics   metrics
	// steps are all steps of a sync, the Dataplane's and the backend's, in
	// the order /status lists them.
	steps []string

	mu sync.Mutex // serialises Reconcile, Resync and Cleanup
	// failing holds the steps whose last attempt failed.
	failing failing
	// sysctlsOK: forwarding was found on (or switched on) since the link
	// was last read; a resync checks again.
	sysctlsOK bool
	sysctls   map[string]string
	// The VIP link as last read or changed; nil means "read it again".
	link  netlink.Link
	kind  string
	addrs map[netip.Prefix]bool
	// refresh: look at every VIP, not only those the last Plan touched
	// (after reading the link, or a sync that failed).
	refresh        bool
	mode           IPTablesMode // in the mode metric
	netlinkChanges int          // netlink and sysctl writes, for tests and benchmarks

	smu      sync.RWMutex // guards the two below, read by Rejected and Status
	rejected map[string]error
	st       Status
}

// seams are the kernel interfaces a Dataplane works through.
type seams struct {
	links  linkHandle
	routes routeHandle
	sysctl sysctlIO
	rules  Rules
	// other is the backend not in use, whose objects a node switching
	// backends still holds; nil: none.
	other Rules
}

// New returns a dataplane; it touches the kernel only on the first
// Reconcile (or Cleanup).
func New(opt Options) *Dataplane {
	opt = withDefaults(opt)
	h := opt.Netlink
	if h == nil {
		h = &netlink.Handle{}
	}
	s := seams{links: h, routes: h, sysctl: newSysctlIO(opt.CommandPrefix), rules: opt.Rules}
	if s.rules == nil {
		// go-iptables cannot reach a namespace behind a command prefix
		// (see goIPTables): the check runs where the agent runs in the
		// namespace it programs.
		var check ruleChecker
		if len(opt.CommandPrefix) == 0 {
			check = newGoIPTables()
		}
		ipt := iptablesFor(opt, execIPTables{prefix: opt.CommandPrefix}, check, h)
		nft := newNFTablesRules(opt)
		s.rules, s.other = ipt, nft
		if opt.Backend == BackendNFTables {
			s.rules, s.other = nft, ipt
		}
	}
	return newDataplane(opt, s)
}

func withDefaults(opt Options) Options {
	if opt.Interface == "" {
		opt.Interface = DefaultInterface
	}
	if opt.ConnMark == 0 {
		opt.ConnMark = DefaultConnMark
	}
	if opt.IPTablesMode == "" {
		opt.IPTablesMode = ModeAuto
	}
	if opt.Backend == "" {
		opt.Backend = BackendIPTables
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return opt
}

// iptablesFor is the iptables backend the options describe.
func iptablesFor(opt Options, tools iptablesTools, check ruleChecker, ct conntrackHandle) *iptablesRules {
	return newIPTablesRules(opt.IPTablesMode,
		RenderOptions{Masquerade: opt.Masquerade, ConnMark: opt.ConnMark, NoLocalTraffic: opt.NoLocalTraffic},
		tools, check, ct, opt.Logger.With("component", "dataplane"))
}

// newDataplane works through s; opt has its defaults (withDefaults).
func newDataplane(opt Options, s seams) *Dataplane {
	steps := append([]string{stepInterface, stepAddresses, stepSysctl}, s.rules.Steps()...)
	d := &Dataplane{
		opt:     opt,
		log:     opt.Logger.With("component", "dataplane"),
		links:   s.links,
		routes:  s.routes,
		sysctl:  s.sysctl,
		rules:   s.rules,
		other:   s.other,
		metrics: newMetrics(opt.Registerer, steps),
		steps:   steps,
		failing: failing{},
		refresh: true,
		sysctls: map[string]string{},
		st:      Status{Interface: opt.Interface, Masquerade: opt.Masquerade},
	}
	rs := s.rules.Status()
	d.st.Backend, d.st.Table = rs.Backend, rs.Table
	d.metrics.backend.WithLabelValues(string(rs.Backend)).Set(1)
	d.publishMode(rs)
	return d
}

// Routes returns the route table of the dataplane's namespace, for the BGP
// package's learned routes, at the configured metric.
func (d *Dataplane) Routes() *RouteTable { return newRouteTable(d.routes, d.opt.RouteMetric) }

// Reconcile makes the kernel match s: VIP addresses, the rules backend's
// rules, sysctls; then drops conntrack entries of UDP reals that left. Only
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
	o := newOutcomes()
	d.sync(ctx, s, o)
	err := o.err()
	d.metrics.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		d.metrics.errors.Inc()
		d.log.Error("sync failed", "err", err)
	}
	fails, since := d.failing.record(start, o.res, d.steps)
	for _, step := range d.steps {
		_, bad := d.failing[step]
		d.metrics.failing.WithLabelValues(step).Set(b2f(bad))
	}
	d.smu.Lock()
	d.st.Failures, d.st.FailingSince = fails, since
	d.st.LastSync = time.Now()
	d.st.LastError = ""
	if err != nil {
		d.st.LastError = err.Error()
	}
	d.smu.Unlock()
	return err
}

// sync runs the steps of one sync, in order, each recording its outcome in
// o:
//
//  1. the VIP interface (read, or created, when not known);
//  2. IPv4 forwarding (when the interface was read);
//  3. the rules backend's plan (it may read its rules);
//  4. IPv6 forwarding (once an IPv6 service is planned);
//  5. new VIP addresses go on while the backend applies its rules: DNAT
//     happens in PREROUTING, before the address matters, and the two are
//     independent kernel work (10,000 addresses take about as long as the
//     restore);
//  6. VIP addresses no longer used come off, only once every rules step
//     succeeded (no rule can still be using them);
//  7. status and metrics.
func (d *Dataplane) sync(ctx context.Context, s model.State, o *outcomes) {
	d.ensureInterface(o)
	d.checkForwarding(ctx, o)
	plan := d.rules.Plan(ctx, s.Services)
	o.noteAll(d.rules.Steps(), plan.Steps)
	d.ensureIPv6Forwarding(ctx, plan, o)
	vips := d.vipCandidates(plan)
	used := func(p netip.Prefix) bool { return plan.VIPs[p] > 0 }
	addErr := d.applyRules(ctx, vips, used, o)
	rulesFailed := o.failed(d.rules.Steps())
	if addErr == nil && len(vips) > 0 {
		if !rulesFailed {
			addErr = d.removeVIPs(vips, used)
		}
		o.note(stepAddresses, addErr)
	}
	d.refresh = rulesFailed || addErr != nil || d.link == nil
	d.publish()
}

// removeOther removes what the backend not in use left in the kernel: a
// node that switches backends (the agent restarted with the other
// dataplane.backend) holds the previous one's objects. They go only once
// the backend in use has programmed everything in this sync (every rules
// step succeeded; applyRules calls it), so every VIP has
// rules all along: until then the old objects keep serving. Both backends'
// DNAT may be in the kernel for that moment; the nftables hooks run first
// (priority dstnat-10), and a connection is NATed once, by the first that
// matches, so nothing is translated twice. Once per start and Resync; a
// failure is a warning in Status (the backend in use works), retried by
// the next sync.
func (d *Dataplane) removeOther(ctx context.Context) {
	if d.other == nil || d.otherGone {
		return
	}
	err := d.other.Cleanup(ctx)
	if err != nil {
		if d.otherErr == nil || d.otherErr.Error() != err.Error() {
			d.log.Warn("cannot remove the other rules backend's objects", "backend", string(d.other.Status().Backend), "err", err)
		}
		d.otherErr = err
		return
	}
	d.otherGone, d.otherErr = true, nil
}

// ensureInterface reads (or creates) the VIP link and its addresses when
// they are not known: at start, after a resync or a failure. It fails as
// the interface step; addresses then wait for the next sync, which (refresh
// stays set) looks at every VIP again.
func (d *Dataplane) ensureInterface(o *outcomes) {
	if d.link != nil {
		return
	}
	d.sysctlsOK = false
	l, kind, n, err := ensureLink(d.links, d.opt.Interface)
	d.netlinkChanges += n
	var addrs map[netip.Prefix]bool
	if err == nil {
		addrs, err = listVIPs(d.links, l)
	}
	o.note(stepInterface, err)
	if err != nil {
		return
	}
	d.link, d.kind, d.addrs = l, kind, addrs
	d.refresh = true
	d.log.Info("VIP interface ready", "interface", d.opt.Interface, "kind", kind, "addresses", len(addrs))
}

// checkForwarding checks IPv4 forwarding whenever the link is read (start,
// resync, after a failure) and retries until it is on: without it DNATed
// packets are dropped, but the rules and addresses are still worth having
// in place for the moment it comes back. IPv6 forwarding, switched on once
// an IPv6 service exists, is checked again by the sync that follows.
func (d *Dataplane) checkForwarding(ctx context.Context, o *outcomes) {
	if d.sysctlsOK {
		return
	}
	delete(d.sysctls, sysctlIPv6Forward)
	err := d.ensureSysctl(ctx, sysctlIPv4Forward, "1")
	o.note(stepSysctl, err)
	d.sysctlsOK = err == nil
}

// ensureIPv6Forwarding switches IPv6 forwarding on once the backend plans
// rules for an IPv6 service (not before: it makes the kernel ignore router
// advertisements).
func (d *Dataplane) ensureIPv6Forwarding(ctx context.Context, plan RulesPlan, o *outcomes) {
	if plan.IPv6 && d.sysctls[sysctlIPv6Forward] != "1" {
		o.note(stepSysctl, d.ensureSysctl(ctx, sysctlIPv6Forward, "1"))
	}
}

func (d *Dataplane) ensureSysctl(ctx context.Context, name, value string) error {
	cur, changed, err := ensureSysctl(ctx, d.sysctl, name, value)
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

// vipCandidates returns the VIPs to look at: those the plan touched, or
// every VIP (in use or on the link) after reading the link or a failure;
// none while the link is unknown.
func (d *Dataplane) vipCandidates(plan RulesPlan) map[netip.Prefix]bool {
	if d.link == nil {
		return nil
	}
	if !d.refresh {
		return plan.Touched
	}
	vips := make(map[netip.Prefix]bool, len(plan.VIPs)+len(d.addrs))
	for p := range plan.VIPs {
		vips[p] = true
	}
	for p := range d.addrs {
		vips[p] = true
	}
	return vips
}

// applyRules has the backend apply its plan while the new VIPs go on, and
// returns the addresses' error (also recorded in o, as the rules' outcomes
// are).
func (d *Dataplane) applyRules(ctx context.Context, vips map[netip.Prefix]bool, used func(netip.Prefix) bool, o *outcomes) error {
	var wg sync.WaitGroup
	var n int
	var addErr error
	if len(vips) > 0 {
		wg.Go(func() { n, addErr = addVIPs(d.links, d.link, vips, used, d.addrs) })
	}
	res := d.rules.Apply(ctx)
	o.noteAll(d.rules.Steps(), res)
	if !o.failed(d.rules.Steps()) {
		// While the addresses still go on (10,000 take ~2 s): the old
		// backend's objects need only the new rules in place, and a DNAT
		// does not need the address.
		d.removeOther(ctx)
	}
	wg.Wait()
	d.netlinkChanges += n
	if addErr != nil {
		d.link = nil // re-read link and addresses next time
		o.note(stepAddresses, addErr)
	}
	return addErr
}

func (d *Dataplane) removeVIPs(vips map[netip.Prefix]bool, used func(netip.Prefix) bool) error {
	n, err := removeVIPs(d.links, d.link, vips, used, d.addrs)
	d.netlinkChanges += n
	if err != nil {
		d.link = nil
	}
	return err
}

// publish updates the metrics and the status readers see from the backend
// and the link.
func (d *Dataplane) publish() {
	rs := d.rules.Status()
	d.publishMode(rs)
	d.metrics.services.Set(float64(rs.Services))
	d.metrics.rules.Set(float64(rs.Rules))
	rejected := d.rules.Rejected()
	d.smu.Lock()
	defer d.smu.Unlock()
	d.rejected = rejected
	d.st.Rules = rs.Rules
	d.st.InterfaceKind = d.kind
	d.st.Sysctls = maps.Clone(d.sysctls)
	d.st.IPTablesMode, d.st.IPTablesModeReason = rs.IPTablesMode, rs.IPTablesModeReason
	d.st.Warnings = append([]string(nil), rs.Warnings...)
	if d.otherErr != nil {
		d.st.Warnings = append(d.st.Warnings, fmt.Sprintf("objects of the %s backend (not in use) remain: %v", d.other.Status().Backend, d.otherErr))
	}
	d.metrics.warnings.Set(float64(len(d.st.Warnings)))
}

// publishMode sets the iptables-mode metric once the backend has chosen.
func (d *Dataplane) publishMode(rs RulesStatus) {
	if rs.IPTablesMode == "" || rs.IPTablesMode == d.mode {
		return
	}
	d.mode = rs.IPTablesMode
	d.metrics.mode.WithLabelValues(string(rs.IPTablesMode)).Set(1)
	d.smu.Lock()
	d.st.IPTablesMode, d.st.IPTablesModeReason = rs.IPTablesMode, rs.IPTablesModeReason
	d.smu.Unlock()
}

// Resync makes the next Reconcile read the kernel again (link, addresses,
// the backend's rules) and repair whatever differs, instead of trusting
// what it last applied: for a periodic check against someone else flushing
// the agent's chains or deleting its addresses. At 10,000 services the
// re-read costs about two seconds (docs/benchmarks/dataplane.md,
// BenchmarkAdopt10k).
func (d *Dataplane) Resync() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.link = nil
	d.refresh = true
	d.otherGone = false
	d.rules.Resync()
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
func (d *Dataplane) Programmed() map[string]bool { return d.rules.Programmed() }

// Status describes the kernel side, as of the last sync.
func (d *Dataplane) Status() Status {
	d.smu.RLock()
	defer d.smu.RUnlock()
	return d.st.clone()
}

// Cleanup removes exactly what the agent creates: both rules backends'
// objects, whichever is in use (iptables: every jump into an EDGE- chain
// and every EDGE- chain, both families; nftables: the table inet
// edgeagent), the VIP interface, and every route with the agent's protocol
// number. Running it again finds nothing to do. Sysctls are left as they
// are.
func (d *Dataplane) Cleanup(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	errs := []error{d.rules.Cleanup(ctx)}
	if d.other != nil {
		errs = append(errs, d.other.Cleanup(ctx))
	}
	errs = append(errs, d.removeInterface(), d.removeRoutes())
	// Whatever was believed applied is gone: start from the kernel again.
	d.link, d.addrs = nil, nil
	d.refresh = true
	d.smu.Lock()
	d.rejected = nil
	d.smu.Unlock()
	return errors.Join(errs...)
}

// removeInterface deletes the VIP interface if it is the agent's (a dummy
// or a port-less bridge).
func (d *Dataplane) removeInterface() error {
	l, err := d.links.LinkByName(d.opt.Interface)
	if err != nil {
		return nil // gone already
	}
	if l.Type() != KindDummy && l.Type() != KindBridge {
		return fmt.Errorf("interface %s has type %q: not the agent's, left alone", d.opt.Interface, l.Type())
	}
	if ports, err := bridgePorts(d.links, l); err != nil || ports > 0 {
		return fmt.Errorf("interface %s has ports (%d) or could not be checked (%v): left alone", d.opt.Interface, ports, err)
	}
	if err := d.links.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", d.opt.Interface, err)
	}
	d.log.Info("removed VIP interface", "interface", d.opt.Interface)
	return nil
}

// removeRoutes deletes every route of the agent's (RouteProtocol).
func (d *Dataplane) removeRoutes() error {
	rt := d.Routes()
	routes, err := rt.listAll()
	errs := []error{err}
	for _, r := range routes {
		if err := rt.h.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
		}
	}
	return errors.Join(errs...)
}
