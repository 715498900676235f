// This file and its neighbours (verdict.go, damper.go, schedule.go,
// engine_linux.go) are the real-server side: the agent's Prober probes reals
// actively (TCP connect or HTTP GET, from the node itself, so a probe takes
// the path traffic takes), turns the results into verdicts with rise/fall
// hysteresis, and the Damper keeps a flapping real from flapping a VIP's BGP
// route. Nothing here programs anything: the agent hands the verdicts to the
// dataplane and BGP reconcilers.

package healthcheck

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Prober.
type Options struct {
	// Concurrency bounds probes in flight; default the configuration's
	// (config.DefaultHealthConcurrency).
	Concurrency int
	Logger      *slog.Logger
	// Registerer receives the prober's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Prober probes the reals of the desired state and marks them healthy or
// not (it implements agent.Prober). Its one goroutine (Run) walks a queue of
// targets ordered by next probe time, opens each due probe as a
// non-blocking socket, at most Concurrency at a time, and collects the
// results from epoll; an idle real costs a queue entry, not a goroutine.
type Prober struct {
	log         *slog.Logger
	concurrency int
	seed        maphash.Seed

	duration *prometheus.HistogramVec
	// running is 1 while Run's loop probes: a prober that could not start
	// its engine, or whose engine failed, leaves every real presumed
	// healthy, and this gauge is how that stops being silent.
	running prometheus.Gauge
	// newEngine is newEngine; tests replace it to fail the start.
	newEngine func() (*engine, error)

	mu      sync.Mutex
	engine  EngineStatus
	targets map[targetKey]*target
	queue   queue
	vsSpec  map[string]string // virtual-service key → spec key ("" for None)
	applied []appliedVS       // what the last Apply returned, for the gauges
	changed func()
	kick    func() // wakes Run; nil when it is not running
}

// dispatchQuantum batches probe starts: everything due within it starts
// together, so the prober wakes up about 1/quantum times a second however
// many reals it probes (each wake-up costs a context switch, which on a VM
// is most of the CPU a probe costs). A probe starts at most this much, or a
// tenth of its interval, early.
const dispatchQuantum = 50 * time.Millisecond

// earlyBy is how early a probe of the given interval may start.
func earlyBy(interval time.Duration) time.Duration {
	return min(dispatchQuantum, interval/10)
}

// appliedVS is one virtual service as the last Apply returned it.
type appliedVS struct {
	key   string
	reals []appliedReal
}

type appliedReal struct {
	// ep is formatted only when the gauges are scraped: every Apply
	// records every real.
	ep       netip.AddrPort
	up       bool // probe verdict
	eligible bool // up and not terminating
}

// New returns a prober; Run starts probing.
func New(opts Options) *Prober {
	p := &Prober{
		log:         cmp.Or(opts.Logger, slog.Default()),
		concurrency: max(cmp.Or(opts.Concurrency, config.DefaultHealthConcurrency), 1),
		seed:        maphash.MakeSeed(),
		targets:     map[targetKey]*target{},
		vsSpec:      map[string]string{},
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edgeagent_healthcheck_duration_seconds",
			Help:    "Time one health-check probe took, by check type and result.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"type", "result"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_healthcheck_engine_running",
			Help: "1 while the health-check engine probes reals; 0 before it starts, after it stops or when it cannot start (reals then stay presumed healthy).",
		}),
		newEngine: newEngine,
	}
	targets := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edgeagent_healthcheck_targets",
		Help: "Distinct probe targets (real endpoint and check) being probed; a real shared by virtual services with the same check is probed once.",
	}, func() float64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return float64(len(p.targets))
	})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(p.duration, p.running, targets, (*gauges)(p))
	}
	return p
}

// Apply starts probing the reals of s that are new, stops probing those that
// left, and returns a copy of s with each real's Healthy set from its
// verdict (a new real is presumed healthy until its probes say otherwise).
// Reals of a virtual service with check type None are left healthy.
// Kubernetes readiness comes first: translation has already dropped
// not-ready endpoints and marked terminating ones, and probes only lower
// Healthy further.
//
// The copy shares each service's reals with s until a verdict lowers one:
// states are read-only once built (model.State.Sort, translate's memo), and
// cloning every real on every pass held a second copy of all of them and
// made as much garbage per pass (1.6 MB at 10,000 services × 4 reals).
func (p *Prober) Apply(s model.State) model.State {
	out := model.State{Services: slices.Clone(s.Services)}
	now := time.Now()

	p.mu.Lock()
	defer p.mu.Unlock()
	want := make(map[targetKey]bool, len(p.targets))
	vsSpec := make(map[string]string, len(out.Services))
	applied := make([]appliedVS, 0, len(out.Services))
	added := false
	for i := range out.Services {
		vs := &out.Services[i]
		sk := ""
		if vs.Health.Type != model.HealthNone {
			sk = specKey(vs.Health)
		}
		key := vs.Key()
		vsSpec[key] = sk
		av := appliedVS{key: key, reals: make([]appliedReal, 0, len(vs.Reals))}
		own := false // vs.Reals is this copy's own, not s's
		for j := range vs.Reals {
			r := &vs.Reals[j]
			if sk != "" {
				k := targetKey{addr: r.Endpoint(), spec: sk}
				t := p.targets[k]
				if t == nil {
					t = &target{key: k, spec: vs.Health, verdict: NewVerdict(), since: now}
					if vs.Health.Type == model.HealthHTTP {
						t.request = httpRequest(k.addr, vs.Health)
					}
					t.next = now.Add(firstDelay(p.seed, k, vs.Health.Interval))
					p.targets[k] = t
					heap.Push(&p.queue, t)
					added = true
				}
				want[k] = true
				if r.Healthy && !t.verdict.Healthy {
					if !own {
						vs.Reals, own = slices.Clone(vs.Reals), true
						r = &vs.Reals[j]
					}
					r.Healthy = false
				}
			}
			av.reals = append(av.reals, appliedReal{ep: r.Endpoint(), up: r.Healthy, eligible: r.Eligible()})
		}
		applied = append(applied, av)
	}
	for k, t := range p.targets {
		if !want[k] {
			delete(p.targets, k)
			heap.Remove(&p.queue, t.index)
		}
	}
	p.vsSpec, p.applied = vsSpec, applied
	if added && p.kick != nil {
		p.kick()
	}
	return out
}

// RealStatus describes the last probe of a real of virtual service vsKey and
// since when the real has had its current verdict. It returns "" for a real
// that is not probed (check type None, or unknown).
func (p *Prober) RealStatus(vsKey string, r model.Real) (string, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sk := p.vsSpec[vsKey]
	if sk == "" {
		return "", time.Time{}
	}
	t := p.targets[targetKey{addr: r.Endpoint(), spec: sk}]
	if t == nil {
		return "", time.Time{}
	}
	if t.last == "" {
		return "pending: not probed yet", t.since
	}
	return t.last, t.since
}

// Run probes until ctx ends, calling changed whenever a real's verdict
// flips. Probes in flight when ctx ends are abandoned (their sockets
// closed), not recorded.
func (p *Prober) Run(ctx context.Context, changed func()) {
	e, err := p.newEngine()
	if err != nil {
		// Without probes every real stays presumed healthy, as with
		// check type None; say so loudly, and wake the agent so /status,
		// readiness and the Node's Events say so at once.
		p.log.Error("health checks cannot run: reals stay presumed healthy", "err", err)
		p.failed(fmt.Errorf("start health-check engine: %w", err))
		changed()
		<-ctx.Done()
		return
	}
	defer e.close()
	p.mu.Lock()
	p.changed, p.kick = changed, e.kick
	p.engine = EngineStatus{Running: true, Since: time.Now()}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.kick = nil
		p.engine.Running = false
		p.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, e.kick)
	defer stop()
	p.running.Set(1)
	defer p.running.Set(0)

	for ctx.Err() == nil {
		now := time.Now()
		wait := time.Hour
		for e.inflight() < p.concurrency {
			t, w := p.nextDue(now)
			if t == nil {
				wait = w
				break
			}
			e.start(t, now)
		}
		if dl, ok := e.nextDeadline(); ok {
			wait = min(wait, dl.Sub(now))
		}
		p.record(e.take())
		if err := e.wait(wait); err != nil {
			p.log.Error("health checks stopped: reals stay presumed healthy", "err", err)
			p.failed(fmt.Errorf("health-check engine: %w", err))
			changed()
			return
		}
		if ctx.Err() == nil {
			p.record(e.take())
		}
	}
}

// EngineStatus says whether the health-check engine runs. While it does not,
// reals keep the verdict they had (new ones presumed healthy): the agent
// reports it in /status, in readiness and as a Node Event.
type EngineStatus struct {
	// Running is true while the engine probes.
	Running bool
	// Error says why the engine could not start, or stopped ("" while it
	// runs, or before Run).
	Error string
	// Since is when the engine started, or failed.
	Since time.Time
}

// Engine reports the health-check engine's state.
func (p *Prober) Engine() EngineStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.engine
}

func (p *Prober) failed(err error) {
	p.mu.Lock()
	p.engine = EngineStatus{Error: err.Error(), Since: time.Now()}
	p.mu.Unlock()
}

// nextDue returns a target whose probe is due, or nearly (marked in flight
// and rescheduled one interval on), or else how long until the next one is.
func (p *Prober) nextDue(now time.Time) (*target, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) > 0 {
		t := p.queue[0]
		// Wake up when the first probe is due, and start with it every
		// probe due a little later: one wake-up per batch.
		early := earlyBy(t.spec.Interval)
		if t.next.Sub(now) > early {
			return nil, t.next.Sub(now)
		}
		t.next = advance(t.next, now.Add(early), t.spec.Interval)
		heap.Fix(&p.queue, 0)
		if t.inflight {
			// Its previous probe is still running: skip this round rather
			// than pile probes onto a slow real.
			continue
		}
		t.inflight = true
		return t, 0
	}
	return nil, time.Hour
}

// record folds finished probes into their targets' verdicts.
func (p *Prober) record(done []outcome) {
	if len(done) == 0 {
		return
	}
	var flipped []outcome
	p.mu.Lock()
	for _, o := range done {
		o.t.inflight = false
		if p.targets[o.t.key] != o.t {
			continue // left the desired state while probed
		}
		var f bool
		o.t.verdict, f = o.t.verdict.Observe(o.ok, o.t.spec.Rise, o.t.spec.Fall)
		o.t.last = o.result
		if f {
			o.t.since = time.Now()
			flipped = append(flipped, o)
		}
	}
	changed := p.changed
	p.mu.Unlock()

	for _, o := range done {
		res := "fail"
		if o.ok {
			res = "ok"
		}
		p.duration.WithLabelValues(string(o.t.spec.Type), res).Observe(o.took.Seconds())
	}
	for _, o := range flipped {
		p.log.Info("real health changed", "real", o.t.key.addr.String(), "check", string(o.t.spec.Type),
			"healthy", o.ok, "result", o.result)
	}
	if len(flipped) > 0 && changed != nil {
		changed()
	}
}

// gauges exports the per-real and per-virtual-service gauges from the last
// Apply, computed at scrape time, so series of reals and virtual services
// that left disappear with them.
type gauges Prober

var (
	realUpDesc = prometheus.NewDesc("edgeagent_real_server_up",
		"1 when the real passes its health check (or has none), 0 when it failed it.",
		[]string{"vs", "real"}, nil)
	healthyRealsDesc = prometheus.NewDesc("edgeagent_virtual_service_healthy_reals",
		"Reals of the virtual service that may take new connections (healthy and not terminating).",
		[]string{"vs"}, nil)
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- realUpDesc
	ch <- healthyRealsDesc
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	applied := g.applied
	g.mu.Unlock()
	for _, vs := range applied {
		n := 0
		for _, r := range vs.reals {
			up := 0.0
			if r.up {
				up = 1
			}
			if r.eligible {
				n++
			}
			ch <- prometheus.MustNewConstMetric(realUpDesc, prometheus.GaugeValue, up, vs.key, r.ep.String())
		}
		ch <- prometheus.MustNewConstMetric(healthyRealsDesc, prometheus.GaugeValue, float64(n), vs.key)
	}
}
