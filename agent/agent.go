// Package agent wires the agent together: it takes snapshots from a source,
// translates them into the desired state, lets the health checks mark the
// reals, and hands the result to every reconciler (dataplane, BGP, APV) in
// that order. It holds the last result for /status and reports verdicts back
// to the source. It owns no protocol or kernel logic of its own.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/util/flowcontrol"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/kubestatus"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/version"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/prometheus/client_golang/prometheus"
)

// Options assemble an agent. Only Config and Source are required; a nil
// component is simply not driven (BGP disabled, no APV devices, ...).
type Options struct {
	Config    *config.Config
	Mode      string // "standalone" or "kubernetes"
	Source    watcher.Source
	Reporter  kubestatus.Reporter
	Dataplane Dataplane
	Speaker   Speaker
	Appliance Appliance
	Prober    Prober
	// APIServer reports the Kubernetes connection, when there is one.
	APIServer func() healthcheck.APIServerStatus
	// NodeEvent records an event on the agent's Node (in a cluster): the
	// dataplane failing for longer than its grace period, and recovering.
	NodeEvent func(eventType, reason, message string)

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// NoStartupGrace damps health changes from the very start instead of
	// after the first hold time (tests of the damping itself).
	NoStartupGrace bool
	// MinBackoff and MaxBackoff bound the retry delay after a failed
	// reconcile: MinBackoff after the first failure, doubling with each
	// failure in a row up to MaxBackoff; defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

// Agent is a running agent.
type Agent struct {
	opts Options
	log  *slog.Logger

	syncs        *prometheus.CounterVec
	syncDuration prometheus.Histogram
	services     prometheus.Gauge
	rejected     prometheus.Gauge

	// pools are the configured VIP pools, parsed once.
	pools []model.Pool
	// trigger coalesces requests for a reconcile.
	trigger chan struct{}
	// backoff is the retry delay after failed reconciles (client-go's
	// flowcontrol.Backoff under the one key backoffKey).
	backoff *flowcontrol.Backoff

	// recMu serialises Reconcile; memo is the translations it reuses.
	recMu sync.Mutex
	memo  *translate.Memo

	mu       sync.Mutex
	state    model.State
	results  []translate.Result
	snapErrs []watcher.SourceError
	errs     map[string]error // component → last error
	synced   bool
	lastSync time.Time

	// damper holds back health-caused VIP announcement changes;
	// dampDue is when the change it holds now becomes due (zero: none).
	damper  *healthcheck.Damper
	dampDue time.Time
	// dpFailingReported: a DataplaneFailing event went out and no
	// DataplaneRecovered since (Reconcile's goroutine only).
	dpFailingReported bool
	// hcFailReported: a HealthCheckEngineFailed event went out
	// (Reconcile's goroutine only).
	hcFailReported bool
}

// New builds an agent; Run starts it.
func New(opts Options) *Agent {
	a := &Agent{
		opts:    opts,
		log:     cmp.Or(opts.Logger, slog.Default()),
		errs:    map[string]error{},
		memo:    translate.NewMemo(),
		pools:   opts.Config.Pools(),
		trigger: make(chan struct{}, 1),
		damper:  newDamper(opts.Config.HealthCheck.HoldTime.Duration, opts.NoStartupGrace),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeagent_reconcile_total",
			Help: "Reconciles of the whole desired state, by result.",
		}, []string{"result"}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgeagent_reconcile_duration_seconds",
			Help:    "Time to translate and apply the whole desired state.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_virtual_services",
			Help: "Virtual services in the desired state.",
		}),
		rejected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_lbroutes_rejected",
			Help: "LBRoutes currently refused (Accepted=False).",
		}),
	}
	a.opts.MinBackoff = cmp.Or(opts.MinBackoff, 500*time.Millisecond)
	a.opts.MaxBackoff = cmp.Or(opts.MaxBackoff, 30*time.Second)
	a.backoff = flowcontrol.NewBackOff(a.opts.MinBackoff, a.opts.MaxBackoff)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(a.syncs, a.syncDuration, a.services, a.rejected, (*routeMetrics)(a))
	}
	return a
}

// newDamper damps health-caused announcement changes, except during the
// first hold time after start (see healthcheck.Damper.SetGrace).
func newDamper(hold time.Duration, noGrace bool) *healthcheck.Damper {
	hold = max(hold, 0) // negative: damping off
	d := healthcheck.NewDamper(hold)
	if !noGrace {
		d.SetGrace(time.Now().Add(hold))
	}
	return d
}

// Trigger asks for a reconcile soon; it never blocks, and requests made
// while one is pending coalesce.
func (a *Agent) Trigger() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// Run drives the agent until ctx ends. It returns the source's error if the
// source fails for good.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	trigger, notify := a.trigger, a.Trigger

	var wg sync.WaitGroup
	srcErr := make(chan error, 1)
	wg.Go(func() {
		if err := a.opts.Source.Run(ctx, notify); err != nil {
			srcErr <- err
		}
	})
	if a.opts.Prober != nil {
		wg.Go(func() { a.opts.Prober.Run(ctx, notify) })
	}
	defer wg.Wait()

	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	// held fires when a VIP change the damper held back becomes due.
	held := time.NewTimer(time.Hour)
	held.Stop()
	defer held.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srcErr:
			return fmt.Errorf("source: %w", err)
		case <-trigger:
		case <-retry.C:
		case <-held.C:
		}
		err := a.Reconcile(ctx)
		a.mu.Lock()
		due := a.dampDue
		a.mu.Unlock()
		if due.IsZero() {
			held.Stop()
		} else {
			held.Reset(time.Until(due))
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := a.retryIn()
			a.log.Error("reconcile failed, will retry", "err", err, "retryIn", wait)
			retry.Reset(wait)
			continue
		}
		a.backoff.Reset(backoffKey)
	}
}

// backoffKey is the agent's one entry in its flowcontrol.Backoff.
const backoffKey = "reconcile"

// retryIn records a failed reconcile and returns the wait before the
// retry: MinBackoff after a success, doubling up to MaxBackoff.
func (a *Agent) retryIn() time.Duration {
	a.backoff.Next(backoffKey, time.Now())
	return a.backoff.Get(backoffKey)
}

// Reconcile runs one pass: snapshot → translate → health → reconcilers. It
// does nothing until the source has synced, so a restarted agent never
// removes kernel or BGP state only because its source has not caught up.
func (a *Agent) Reconcile(ctx context.Context) error {
	if !a.opts.Source.Synced() {
		return nil
	}
	a.recMu.Lock()
	defer a.recMu.Unlock()
	start := time.Now()
	snap := a.opts.Source.Snapshot()
	state, results := translate.Build(snap.Routes, translate.Options{
		Pools:     a.pools,
		Endpoints: snap.Endpoints,
		Memo:      a.memo,
	})
	if a.opts.Prober != nil {
		state = a.opts.Prober.Apply(state)
		a.noteHealthEngine(a.opts.Prober.Engine())
	}

	errs := map[string]error{}
	// Peers first, so the first announcement opens every session at once.
	if pd, ok := a.opts.Speaker.(peerDiscoverer); ok && a.opts.Config.BGP.NodePeers != nil {
		if err := pd.SetDiscoveredPeers(ctx, nodePeers(a.opts.Config, snap.NodePeers)); err != nil {
			a.log.Warn("bgp node peers", "err", err)
		}
	}
	if dp := a.opts.Dataplane; dp != nil {
		if err := dp.Reconcile(ctx, state); err != nil {
			errs["dataplane"] = err
		}
		a.noteDataplane(dataplaneStatus(dp.Status()))
	}
	if sp := a.opts.Speaker; sp != nil {
		if err := sp.Announce(ctx, a.announceable(state)); err != nil {
			errs["bgp"] = err
		}
	}
	if ap := a.opts.Appliance; ap != nil {
		if err := ap.Reconcile(ctx, state); err != nil {
			errs["apv"] = err
		}
	}

	rejected := 0
	for _, r := range results {
		if !r.Accepted {
			rejected++
		}
	}
	a.services.Set(float64(len(state.Services)))
	a.rejected.Set(float64(rejected))
	a.syncDuration.Observe(time.Since(start).Seconds())

	a.mu.Lock()
	a.state, a.results, a.snapErrs, a.errs = state, results, snap.Errors, errs
	a.synced, a.lastSync = true, time.Now()
	a.mu.Unlock()

	if rep := a.opts.Reporter; rep != nil {
		rep.ReportRoutes(ctx, a.routeReports())
		if a.opts.Speaker != nil {
			rep.ReportNeighbors(ctx, neighborStatus(a.opts.Speaker.Neighbors()))
		}
	}

	var all []error
	for name, err := range errs {
		all = append(all, fmt.Errorf("%s: %w", name, err))
	}
	if len(all) > 0 {
		a.syncs.WithLabelValues("error").Inc()
		return errors.Join(all...)
	}
	a.syncs.WithLabelValues("ok").Inc()
	a.log.Debug("reconciled", "services", len(state.Services), "rejected", rejected, "duration", time.Since(start))
	return nil
}

// announceable is the VIP routes to advertise: VIPs with an eligible real
// and, when there is a dataplane, whose virtual services are programmed —
// announcing a VIP the kernel cannot serve would attract traffic only to
// drop it. Health-caused changes pass the damper, so a flapping real moves
// a route at most once per hold time (healthCheck.holdTime); the agent
// reconciles again when a held change becomes due. Programming is not
// damped.
func (a *Agent) announceable(state model.State) []model.VIPRoute {
	prog := func(*model.VirtualService) bool { return true }
	if a.opts.Dataplane != nil {
		p := a.opts.Dataplane.Programmed()
		prog = func(vs *model.VirtualService) bool { return p[vs.Key()] }
	}
	healthy := map[netip.Addr]bool{}
	for i := range state.Services {
		vs := &state.Services[i]
		healthy[vs.VIP] = healthy[vs.VIP] || vs.EligibleCount() > 0
	}
	announce, due := a.damper.Update(time.Now(), healthy)
	a.mu.Lock()
	a.dampDue = due
	a.mu.Unlock()
	return state.RoutesWhere(func(vs *model.VirtualService) bool {
		if !prog(vs) || !announce[vs.VIP] {
			return false
		}
		// A VIP held up although all its reals are down keeps the
		// attributes of all its services.
		return vs.EligibleCount() > 0 || !healthy[vs.VIP]
	})
}

func (a *Agent) routeReports() []kubestatus.RouteReport {
	a.mu.Lock()
	results, state := a.results, a.state
	a.mu.Unlock()
	var prog map[string]bool
	var refused map[string]error
	if a.opts.Dataplane != nil {
		prog, refused = a.opts.Dataplane.Programmed(), a.opts.Dataplane.Rejected()
	}
	adv := a.advertised()
	type routeKey struct{ ns, name string }
	byRoute := make(map[routeKey][]*model.VirtualService, len(results))
	for i := range state.Services {
		vs := &state.Services[i]
		k := routeKey{vs.Namespace, vs.Route}
		byRoute[k] = append(byRoute[k], vs)
	}
	out := make([]kubestatus.RouteReport, 0, len(results))
	for _, r := range results {
		rep := kubestatus.RouteReport{Result: r}
		vss := byRoute[routeKey{r.Namespace, r.Name}]
		if len(vss) > 0 {
			rep.Programmed, rep.Advertised = true, true
		}
		for _, vs := range vss {
			key := vs.Key()
			rep.Programmed = rep.Programmed && prog[key]
			rep.Advertised = rep.Advertised && adv(vs)
			rep.Reals = max(rep.Reals, len(vs.Reals))
			rep.HealthyReals = max(rep.HealthyReals, vs.EligibleCount())
			if err := refused[key]; err != nil && rep.Message == "" {
				rep.Message = fmt.Sprintf("%d/%s: %v", vs.Port, vs.Protocol, err)
			}
		}
		out = append(out, rep)
	}
	return out
}

func (a *Agent) programmed() func(*model.VirtualService) bool {
	if a.opts.Dataplane == nil {
		return func(*model.VirtualService) bool { return false }
	}
	p := a.opts.Dataplane.Programmed()
	return func(vs *model.VirtualService) bool { return p[vs.Key()] }
}

func (a *Agent) advertised() func(*model.VirtualService) bool {
	if a.opts.Speaker == nil {
		return func(*model.VirtualService) bool { return false }
	}
	p := a.opts.Speaker.Advertised()
	return func(vs *model.VirtualService) bool {
		return p[netip.PrefixFrom(vs.VIP, vs.VIP.BitLen()).String()]
	}
}

// Status builds the /status document.
func (a *Agent) Status() status.Report {
	a.mu.Lock()
	state, results, snapErrs, synced := a.state, a.results, a.snapErrs, a.synced
	errs := make(map[string]error, len(a.errs))
	for k, v := range a.errs {
		errs[k] = v
	}
	a.mu.Unlock()

	r := status.Report{
		Node:            a.opts.Config.NodeName,
		Version:         version.String(),
		Mode:            a.opts.Mode,
		Time:            time.Now().UTC(),
		Ready:           synced,
		Neighbors:       []status.Neighbor{},
		VirtualServices: []status.VirtualService{},
		LBRoutes:        []status.LBRoute{},
		SourceErrors:    sourceErrors(snapErrs),
	}
	if !synced {
		r.Degraded = append(r.Degraded, "source not synced yet")
	}
	for name, err := range errs {
		r.Degraded = append(r.Degraded, fmt.Sprintf("%s: %v", name, err))
	}
	slices.Sort(r.Degraded)
	prog, adv := a.programmed(), a.advertised()
	var refused map[string]error
	if a.opts.Dataplane != nil {
		refused = a.opts.Dataplane.Rejected()
	}
	for i := range state.Services {
		vs := &state.Services[i]
		svs := status.VirtualService{
			Key: vs.Key(), Name: vs.Name, Group: vs.Group,
			VIP: vs.VIP.String(), Port: vs.Port, Protocol: string(vs.Protocol), Policy: string(vs.Policy),
			Reals:      make([]status.Real, 0, len(vs.Reals)),
			Programmed: prog(vs), Advertised: adv(vs),
			HealthCheck: healthSummary(vs.Health),
		}
		if err := refused[vs.Key()]; err != nil {
			svs.Error = err.Error()
		}
		for _, rl := range vs.Reals {
			sr := status.Real{IP: rl.IP.String(), Port: rl.Port, Weight: rl.Weight, Healthy: rl.Healthy, Terminating: rl.Terminating}
			if a.opts.Prober != nil {
				sr.LastResult, sr.Since = a.opts.Prober.RealStatus(vs.Key(), rl)
			}
			svs.Reals = append(svs.Reals, sr)
		}
		r.VirtualServices = append(r.VirtualServices, svs)
	}
	for _, res := range results {
		lr := status.LBRoute{Key: res.Key(), Accepted: res.Accepted, Reason: res.Problems.Reason(), Services: len(res.Services)}
		for _, p := range res.Problems {
			lr.Problems = append(lr.Problems, status.Problem{Field: p.Field, Reason: p.Reason, Detail: p.Detail})
		}
		r.LBRoutes = append(r.LBRoutes, lr)
	}
	a.componentStatus(&r)
	return r
}

// componentStatus adds each component's own status to r, and what it
// means for readiness.
func (a *Agent) componentStatus(r *status.Report) {
	if a.opts.Dataplane != nil {
		r.Dataplane = dataplaneStatus(a.opts.Dataplane.Status())
		if d := dataplaneUnready(r.Dataplane, r.Time, a.opts.Config.Dataplane.FailureGracePeriod.Duration); d != "" {
			r.Ready = false
			r.Degraded = append(r.Degraded, d)
			slices.Sort(r.Degraded)
		}
	}
	if a.opts.Speaker != nil {
		r.Neighbors = neighborStatus(a.opts.Speaker.Neighbors())
		r.LearnedRoutes = learnedStatus(a.opts.Speaker.Learned())
	}
	if a.opts.Appliance != nil {
		r.APV = apvStatus(a.opts.Appliance.Status())
		if ev := a.opts.Appliance.EventsStatus(); ev != nil {
			r.APVEvents = new(status.APVEvents(*ev))
		}
		r.Degraded = append(r.Degraded, apvDegraded(r.APV, r.APVEvents)...)
		slices.Sort(r.Degraded)
	}
	if a.opts.Prober != nil {
		es := a.opts.Prober.Engine()
		r.HealthCheck = new(status.HealthCheck(es))
		if why := healthEngineDown(es); why != "" {
			r.Ready = false
			r.Degraded = append(r.Degraded, why)
			slices.Sort(r.Degraded)
		}
	}
	if a.opts.APIServer != nil {
		r.APIServer = status.APIServer(a.opts.APIServer())
		if !r.APIServer.Connected {
			r.Degraded = append(r.Degraded, "apiserver unreachable: serving the last known state")
		}
	} else {
		r.APIServer.LastEventAgeSeconds = -1
	}
}

// noteDataplane records on the Node when the dataplane has failed for
// longer than its grace period (the moment /readyz turns 503), and when it
// recovers, once each.
func (a *Agent) noteDataplane(st *status.Dataplane) {
	if a.opts.NodeEvent == nil || st == nil {
		return
	}
	switch why := dataplaneUnready(st, time.Now(), a.opts.Config.Dataplane.FailureGracePeriod.Duration); {
	case why != "" && !a.dpFailingReported:
		a.dpFailingReported = true
		a.opts.NodeEvent("Warning", "DataplaneFailing", why)
	case st.FailingSince.IsZero() && a.dpFailingReported:
		a.dpFailingReported = false
		a.opts.NodeEvent("Normal", "DataplaneRecovered", "every dataplane step succeeds again")
	}
}

// sourceErrors are the source's unreadable inputs in /status's terms
// (a struct conversion: the compiler checks the fields agree).
func sourceErrors(errs []watcher.SourceError) []status.SourceError {
	if errs == nil {
		return nil
	}
	out := make([]status.SourceError, len(errs))
	for i, e := range errs {
		out[i] = status.SourceError(e)
	}
	return out
}

// healthEngineDown says why the agent is not ready when its health-check
// engine could not start or stopped ("" otherwise): reals are then no
// longer probed and keep their last verdict, which must not pass for a
// healthy node. The rest of the agent goes on working.
func healthEngineDown(es healthcheck.EngineStatus) string {
	if es.Error == "" {
		return ""
	}
	return "health checks not running, reals keep their last verdict (new ones presumed healthy): " + es.Error
}

// noteHealthEngine records on the Node when the health-check engine fails,
// and when it runs again after that, once each.
func (a *Agent) noteHealthEngine(es healthcheck.EngineStatus) {
	if a.opts.NodeEvent == nil {
		return
	}
	switch why := healthEngineDown(es); {
	case why != "" && !a.hcFailReported:
		a.hcFailReported = true
		a.opts.NodeEvent("Warning", "HealthCheckEngineFailed", why)
	case es.Running && a.hcFailReported:
		a.hcFailReported = false
		a.opts.NodeEvent("Normal", "HealthCheckEngineRunning", "health checks probe reals again")
	}
}

// dataplaneUnready says why the agent is not ready when its dataplane has
// been failing for longer than the grace period ("" otherwise). A short
// failure (the xtables lock held by kube-proxy for a moment) only shows as
// degraded; a node that cannot program its virtual services for longer is
// taken out of Ready, so a rollout stops and an alert fires.
func dataplaneUnready(st *status.Dataplane, now time.Time, grace time.Duration) string {
	if st == nil || st.FailingSince.IsZero() || now.Sub(st.FailingSince) <= grace {
		return ""
	}
	steps := make([]string, 0, len(st.Failures))
	for _, f := range st.Failures {
		steps = append(steps, f.Step+": "+f.Error)
	}
	return fmt.Sprintf("dataplane failing for %s (longer than dataplane.failureGracePeriod %s): %s",
		now.Sub(st.FailingSince).Round(time.Second), grace, strings.Join(steps, "; "))
}

func healthSummary(h model.HealthSpec) string {
	switch h.Type {
	case model.HealthNone:
		return "None"
	case model.HealthHTTP:
		return fmt.Sprintf("HTTP GET %s every %s, timeout %s, rise %d, fall %d", h.Path, h.Interval, h.Timeout, h.Rise, h.Fall)
	default:
		return fmt.Sprintf("TCP every %s, timeout %s, rise %d, fall %d", h.Interval, h.Timeout, h.Rise, h.Fall)
	}
}
