// Package kubestatus reports what the agents did back into the cluster, at
// a cost that grows with routes plus nodes, not routes times nodes:
//
//   - every agent writes its own view of every LBRoute into a few
//     LBRouteReport objects of its own (a slice of a few hundred routes
//     each, server-side applied as edgeagent-node-<node>), and rewrites a
//     slice only when an entry in it changed;
//   - the leader (the holder of the agents' Lease) folds every node's
//     reports into each LBRoute's status (conditions that count the nodes,
//     the nodes that do not serve the route, the summary fields) and
//     writes a route only when what it says changed; it also emits the
//     Events and prunes the reports of Nodes that left the cluster;
//   - every agent writes its BGP sessions into its EdgeNodeStatus.
//
// Data flows one way: the agent's verdicts in (ReportRoutes,
// ReportNeighbors), the informers' caches in, writes out.
package kubestatus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// LeaderFieldManager writes LBRoute status.
const LeaderFieldManager = "edgeagent-leader"

// NodeFieldManager is the server-side-apply field manager of one node's
// agent: it owns that node's LBRouteReports and EdgeNodeStatus.
func NodeFieldManager(node string) string {
	const prefix = "edgeagent-node-"
	if len(prefix)+len(node) > 128 { // field manager names are limited to 128
		node = node[:128-len(prefix)]
	}
	return prefix + node
}

// Options configure the Writer.
type Options struct {
	NodeName string
	// Advertises: this node runs BGP (bgp.enabled), so a route it serves
	// must also be advertised by it.
	Advertises bool
	// QPS and Burst bound the agent's status writes (reports, and while it
	// leads, LBRoute status); zero means config's defaults. The apiserver's
	// flow control (the shipped FlowSchema) queues them beyond that.
	QPS   float64
	Burst int
	// Workers is how many LBRoute status writes the leader has in flight
	// (default 8).
	Workers int
	// StartupHold is how long the leader waits for a node that just
	// started to report before counting it as not programmed (default
	// 60s: an agent's first reconcile of 10,000 routes takes seconds on an
	// idle node and tens of seconds on a busy one); GenerationHold how long it waits for the nodes to report a
	// route's new generation (default 2s). Holding a route's status while
	// nodes catch up writes it once instead of once per node.
	StartupHold, GenerationHold time.Duration
	// StartupHeartbeat is how often a starting agent refreshes its presence
	// report (default 15s), and StartupHoldMax the longest the leader waits
	// for a node that keeps saying it is starting (default 5m): on a
	// crowded node the first reconcile of 10,000 routes can outlast
	// StartupHold, and a route written without the node is written again
	// when it reports.
	StartupHeartbeat, StartupHoldMax time.Duration
	// NeighborStatus turns EdgeNodeStatus writing on; NeighborInterval is
	// the least time between two such writes (default 30s) unless a
	// session changes state.
	NeighborStatus   bool
	NeighborInterval time.Duration
	Registerer       prometheus.Registerer
	Logger           *slog.Logger
}

// Writer is the Kubernetes Reporter (Reporter) of one agent.
type Writer struct {
	k    *watcher.Kube
	c    *client
	opts Options
	log  *slog.Logger

	limiter  *rate.Limiter
	recorder record.EventRecorder
	bcast    record.EventBroadcaster

	node *nodeReporter
	nb   *neighbors

	mu   sync.Mutex
	lead *leader // non-nil while this agent leads

	writes   *prometheus.CounterVec
	nWrites  atomic.Int64
	failures prometheus.Counter
	starting prometheus.GaugeFunc
}

var _ Reporter = (*Writer)(nil)

// New makes a Writer on the source's clients and caches.
func New(k *watcher.Kube, opts Options) (*Writer, error) {
	if opts.NodeName == "" {
		return nil, fmt.Errorf("status writer: node name is empty")
	}
	if opts.QPS <= 0 {
		opts.QPS = config.DefaultStatusQPS
	}
	if opts.Burst <= 0 {
		opts.Burst = config.DefaultStatusBurst
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.StartupHold <= 0 {
		opts.StartupHold = 60 * time.Second
	}
	if opts.StartupHeartbeat <= 0 {
		opts.StartupHeartbeat = 15 * time.Second
	}
	if opts.StartupHoldMax <= 0 {
		opts.StartupHoldMax = 5 * time.Minute
	}
	if opts.StartupHoldMax < opts.StartupHold {
		opts.StartupHoldMax = opts.StartupHold
	}
	if opts.GenerationHold <= 0 {
		opts.GenerationHold = 2 * time.Second
	}
	if opts.NeighborInterval <= 0 {
		opts.NeighborInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c, err := newClient(k.RESTConfig())
	if err != nil {
		return nil, err
	}
	w := &Writer{
		k: k, c: c, opts: opts, log: opts.Logger.With("component", "status"),
		limiter: rate.NewLimiter(rate.Limit(opts.QPS), opts.Burst),
	}
	w.writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeagent_status_writes_total",
		Help: "Status writes to the apiserver, by kind (node: this node's LBRouteReports, leader: LBRoute status, prune: reports of departed nodes deleted, neighbors: EdgeNodeStatus).",
	}, []string{"kind"})
	w.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgeagent_status_write_failures_total",
		Help: "Status writes that failed (retried with backoff).",
	})
	// Counted at scrape time from the leader's views (0 on a non-leader).
	w.starting = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edgeagent_status_starting_nodes",
		Help: "On the leader: edge nodes whose agent runs but has not reported yet; while there are any, the routes' status waits for them (StartupHold after their last heartbeat, at most StartupHoldMax).",
	}, func() float64 {
		if l := w.leading(); l != nil {
			return float64(l.startingNodes())
		}
		return 0
	})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(w.starting); err != nil {
			return nil, err
		}
		if err := opts.Registerer.Register(w.writes); err != nil {
			return nil, err
		}
		if err := opts.Registerer.Register(w.failures); err != nil {
			return nil, err
		}
	}
	w.bcast = record.NewBroadcaster()
	w.recorder = w.bcast.NewRecorder(scheme, corev1.EventSource{Component: "edgeagent", Host: opts.NodeName})
	w.node = newNodeReporter(w)
	w.nb = &neighbors{w: w, kick: make(chan struct{}, 1)}

	// The leader hears of route changes through the shared informer.
	_, err = k.Routes().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, new any) {
			if l := w.leading(); l != nil {
				l.routeUpdated(old, new)
			}
		},
		DeleteFunc: func(obj any) {
			if l := w.leading(); l != nil {
				l.routeDeleted(obj)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Recorder is the writer's event recorder (component "edgeagent"), for
// other parts of the agent to record Events with: they share its
// broadcaster, which Run starts, and so its aggregation and spam filter.
func (w *Writer) Recorder() record.EventRecorder { return w.recorder }

// Writes is the number of successful status writes so far.
func (w *Writer) Writes() int64 { return w.nWrites.Load() }

func (w *Writer) wrote(kind string) {
	w.writes.WithLabelValues(kind).Inc()
	w.nWrites.Add(1)
}

func (w *Writer) leading() *leader {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lead
}

// Run writes this node's reports and EdgeNodeStatus until ctx ends.
func (w *Writer) Run(ctx context.Context) error {
	sink := &typedcorev1.EventSinkImpl{Interface: w.k.Client.CoreV1().Events("")}
	w.bcast.StartRecordingToSink(sink)
	defer w.bcast.Shutdown()
	var wg sync.WaitGroup
	wg.Go(func() { w.nb.run(ctx) })
	err := w.node.run(ctx)
	wg.Wait()
	return err
}

// Lead runs the leader's part (folding every node's reports into LBRoute
// status) until ctx ends: call it for each term of leadership.
func (w *Writer) Lead(ctx context.Context) error {
	l, err := newLeader(w)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.lead = l
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.lead = nil
		w.mu.Unlock()
	}()
	return l.run(ctx)
}

// ReportRoutes implements Reporter. It is cheap: it compares with
// what was last reported and queues the slices (and, on the leader, the
// routes) whose status changed.
func (w *Writer) ReportRoutes(_ context.Context, reports []RouteReport) {
	changed := w.node.report(reports)
	if l := w.leading(); l != nil {
		for _, k := range changed {
			l.queue.Add(k)
		}
	}
}

// ReportNeighbors implements Reporter.
func (w *Writer) ReportNeighbors(_ context.Context, neighbors []status.Neighbor) {
	w.nb.report(neighbors)
}

// entryOf is one route's entry in this node's report and the verdict the
// leader needs of it.
func entryOf(r RouteReport) (v1alpha1.ReportedRoute, Verdict) {
	res := r.Result
	e := v1alpha1.ReportedRoute{
		Namespace: res.Namespace, Name: res.Name, Generation: res.Generation,
		Programmed: r.Programmed, Advertised: r.Advertised,
		Reals: int32(r.Reals), HealthyReals: int32(r.HealthyReals),
		Message: truncate(r.Message, 256),
	}
	v := Verdict{Accepted: res.Accepted, ServiceFound: res.ServiceFound, Reals: int32(r.Reals)}
	if !res.Accepted {
		v.Reason = res.Problems.Reason()
		v.Message = truncate(res.Problems.Error(), 1024)
		e.Message = "rejected: " + truncate(res.Problems.Error(), 240)
	}
	if len(res.Services) > 0 {
		vs := res.Services[0]
		v.VSName, v.Group = vs.Name, vs.Group
		ports := ""
		for i, s := range res.Services {
			if i > 0 {
				ports += ","
			}
			ports += fmt.Sprintf("%d/%s", s.Port, s.Protocol)
		}
		v.Ports = ports
	}
	return e, v
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// semantic is the comparison the writer uses for API objects.
var semantic = equality.Semantic
