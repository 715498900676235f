package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Condition types and reasons written to LBRoute status (besides the
// rejection reasons of package model).
const (
	ConditionAccepted   = "Accepted"
	ConditionProgrammed = "Programmed"
	ConditionAdvertised = "Advertised"
	ConditionReady      = "Ready"

	ReasonAccepted       = "Accepted"
	ReasonProgrammed     = "Programmed"
	ReasonNotProgrammed  = "NotProgrammed"
	ReasonAdvertised     = "Advertised"
	ReasonNotAdvertised  = "NotAdvertised"
	ReasonReady          = "Ready"
	ReasonRejected       = "Rejected"
	ReasonNoHealthyReals = "NoHealthyReals"
)

// LeaderFieldManager owns the route-wide part of LBRoute status.
const LeaderFieldManager = "edgeagent-leader"

// NodeFieldManager is the server-side-apply field manager of one node's
// agent: it owns that node's entry in status.nodes[] and its EdgeNodeStatus.
func NodeFieldManager(node string) string {
	const prefix = "edgeagent-node-"
	if len(prefix)+len(node) > 128 { // field manager names are limited to 128
		node = node[:128-len(prefix)]
	}
	return prefix + node
}

// StatusOptions configure the Reporter.
type StatusOptions struct {
	NodeName string
	// QPS and Burst bound LBRoute status writes (default 20 and 100).
	QPS   float64
	Burst int
	// NeighborStatus turns EdgeNodeStatus writing on; NeighborInterval is
	// the least time between two such writes (default 30s) unless a
	// session changes state.
	NeighborStatus   bool
	NeighborInterval time.Duration
	Registerer       prometheus.Registerer
	Logger           *slog.Logger
}

// StatusWriter is the Kubernetes Reporter.
//
// Ownership, so agents never overwrite each other (server-side apply):
//   - status.nodes[{node: X}] belongs to X's agent (field manager
//     edgeagent-node-X);
//   - status.conditions and the summary fields (vsName, group, ports,
//     realServers, observedGeneration) belong to the leader only (field
//     manager edgeagent-leader, the holder of the agents' Lease). The
//     leader aggregates conditions over every node's entry: Programmed and
//     Advertised are True when at least one node is; Ready when the route is
//     accepted, advertised somewhere and has a healthy real. The leader also
//     emits the Events (rejection, first Ready), so each happens once, not
//     once per node.
//
// Writes are skipped when the cached object already says the same thing,
// coalesced per route in a work queue, and rate-limited.
type StatusWriter struct {
	k    *Kube
	opts StatusOptions
	log  *slog.Logger

	limiter  *rate.Limiter
	queue    workqueue.TypedRateLimitingInterface[string]
	leader   atomic.Bool
	recorder record.EventRecorder
	bcast    record.EventBroadcaster

	mu      sync.Mutex
	desired map[string]*routeDesired
	applied map[string]appliedNode

	nbMu      sync.Mutex
	nbDesired []v1alpha1.BGPNeighborStatus
	nbWritten []v1alpha1.BGPNeighborStatus
	nbLast    time.Time
	nbKick    chan struct{}

	writes   *prometheus.CounterVec
	nWrites  atomic.Int64
	failures prometheus.Counter
}

type routeDesired struct {
	node   v1alpha1.NodeStatus // LastTransitionTime unset
	result routeVerdict
}

// routeVerdict is what the leader needs of the translation result.
type routeVerdict struct {
	accepted     bool
	reason       string
	message      string
	serviceForm  bool
	serviceFound bool
	vsName       string
	group        string
	ports        string
	reals        int32
}

type appliedNode struct {
	uid  string
	node v1alpha1.NodeStatus
	at   time.Time
}

// NewStatusWriter makes a Reporter on the source's clients and caches.
func NewStatusWriter(k *Kube, opts StatusOptions) (*StatusWriter, error) {
	if opts.NodeName == "" {
		return nil, fmt.Errorf("status writer: node name is empty")
	}
	if opts.QPS <= 0 {
		opts.QPS = 20
	}
	if opts.Burst <= 0 {
		opts.Burst = 100
	}
	if opts.NeighborInterval <= 0 {
		opts.NeighborInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &StatusWriter{
		k: k, opts: opts, log: opts.Logger.With("component", "status"),
		limiter: rate.NewLimiter(rate.Limit(opts.QPS), opts.Burst),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "lbroute-status"}),
		desired: map[string]*routeDesired{},
		applied: map[string]appliedNode{},
		nbKick:  make(chan struct{}, 1),
	}
	w.writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeagent_status_writes_total",
		Help: "Status writes to the apiserver, by kind (node: this node's LBRoute status entry, leader: route-wide conditions, neighbors: EdgeNodeStatus).",
	}, []string{"kind"})
	w.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgeagent_status_write_failures_total",
		Help: "Status writes that failed (retried with backoff).",
	})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(w.writes); err != nil {
			return nil, err
		}
		if err := opts.Registerer.Register(w.failures); err != nil {
			return nil, err
		}
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	w.bcast = record.NewBroadcaster()
	w.recorder = w.bcast.NewRecorder(scheme, corev1.EventSource{Component: "edgeagent", Host: opts.NodeName})

	// Other nodes' entries feed the leader's aggregate conditions.
	_, err := k.Routes().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, new any) {
			o, ok1 := old.(*v1alpha1.LBRoute)
			n, ok2 := new.(*v1alpha1.LBRoute)
			if ok1 && ok2 && w.leader.Load() && !equality.Semantic.DeepEqual(o.Status.Nodes, n.Status.Nodes) {
				w.queue.Add(n.Namespace + "/" + n.Name)
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
func (w *StatusWriter) Recorder() record.EventRecorder { return w.recorder }

// Writes is the number of successful status writes so far.
func (w *StatusWriter) Writes() int64 { return w.nWrites.Load() }

// SetLeader tells the writer whether this agent holds the Lease. On gaining
// it, every known route is re-examined.
func (w *StatusWriter) SetLeader(on bool) {
	if w.leader.Swap(on) == on || !on {
		return
	}
	w.mu.Lock()
	keys := make([]string, 0, len(w.desired))
	for k := range w.desired {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	for _, k := range keys {
		w.queue.Add(k)
	}
}

// Run writes until ctx ends.
func (w *StatusWriter) Run(ctx context.Context) error {
	sink := &typedcorev1.EventSinkImpl{Interface: w.k.Client.CoreV1().Events("")}
	w.bcast.StartRecordingToSink(sink)
	defer w.bcast.Shutdown()
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.neighborLoop(ctx)
	}()
	for w.processNext(ctx) {
	}
	wg.Wait()
	return nil
}

func (w *StatusWriter) processNext(ctx context.Context) bool {
	key, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(key)
	if err := w.sync(ctx, key); err != nil {
		if ctx.Err() != nil {
			return true
		}
		w.failures.Inc()
		w.log.Warn("status write failed", "lbroute", key, "err", err)
		w.queue.AddRateLimited(key)
		return true
	}
	w.queue.Forget(key)
	return true
}

// ReportRoutes implements Reporter. It is cheap: it only compares with what
// was last reported and queues the routes whose status changed.
func (w *StatusWriter) ReportRoutes(_ context.Context, reports []RouteReport) {
	seen := make(map[string]bool, len(reports))
	var changed []string
	w.mu.Lock()
	for _, r := range reports {
		key := r.Result.Key()
		seen[key] = true
		d := w.desiredFor(r)
		if old, ok := w.desired[key]; ok && *old == *d {
			continue
		}
		w.desired[key] = d
		changed = append(changed, key)
	}
	for key := range w.desired {
		if !seen[key] {
			delete(w.desired, key)
			delete(w.applied, key)
		}
	}
	w.mu.Unlock()
	for _, k := range changed {
		w.queue.Add(k)
	}
}

func (w *StatusWriter) desiredFor(r RouteReport) *routeDesired {
	res := r.Result
	d := &routeDesired{node: v1alpha1.NodeStatus{
		Node:         w.opts.NodeName,
		Programmed:   r.Programmed,
		Advertised:   r.Advertised,
		Reals:        int32(r.Reals),
		HealthyReals: int32(r.HealthyReals),
	}}
	v := routeVerdict{accepted: res.Accepted, serviceFound: res.ServiceFound, reals: int32(r.Reals)}
	if !res.Accepted {
		v.reason = res.Problems.Reason()
		v.message = truncate(res.Problems.Error(), 1024)
		d.node.Message = "rejected: " + truncate(res.Problems.Error(), 256)
	}
	if len(res.Services) > 0 {
		vs := res.Services[0]
		v.vsName, v.group = vs.Name, vs.Group
		var ps []string
		for _, s := range res.Services {
			ps = append(ps, fmt.Sprintf("%d/%s", s.Port, s.Protocol))
		}
		v.ports = strings.Join(ps, ",")
	}
	d.result = v
	return d
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (w *StatusWriter) sync(ctx context.Context, key string) error {
	w.mu.Lock()
	d, ok := w.desired[key]
	var dd routeDesired
	if ok {
		dd = *d
	}
	last := w.applied[key]
	w.mu.Unlock()
	if !ok {
		return nil
	}
	obj, exists, err := w.k.Routes().GetStore().GetByKey(key)
	if err != nil || !exists {
		return nil // deleted: nothing to report on
	}
	rt, ok := obj.(*v1alpha1.LBRoute)
	if !ok {
		return nil
	}
	if err := w.syncNode(ctx, rt, dd, last); err != nil {
		return err
	}
	if w.leader.Load() {
		return w.syncLeader(ctx, rt, dd)
	}
	return nil
}

func sameNode(a, b v1alpha1.NodeStatus) bool {
	a.LastTransitionTime, b.LastTransitionTime = metav1.Time{}, metav1.Time{}
	return a == b
}

// appliedGrace is how long a write is trusted over a cache that has not
// caught up with it yet.
const appliedGrace = 10 * time.Second

func (w *StatusWriter) syncNode(ctx context.Context, rt *v1alpha1.LBRoute, d routeDesired, last appliedNode) error {
	key := rt.Namespace + "/" + rt.Name
	var cur *v1alpha1.NodeStatus
	for i := range rt.Status.Nodes {
		if rt.Status.Nodes[i].Node == w.opts.NodeName {
			cur = &rt.Status.Nodes[i]
		}
	}
	if cur != nil && sameNode(*cur, d.node) {
		return nil
	}
	if last.uid == string(rt.UID) && sameNode(last.node, d.node) && time.Since(last.at) < appliedGrace {
		return nil // written; the cache has not seen it yet
	}
	entry := d.node
	entry.LastTransitionTime = metav1.Now()
	if cur != nil && cur.Programmed == entry.Programmed && cur.Advertised == entry.Advertised && !cur.LastTransitionTime.IsZero() {
		entry.LastTransitionTime = cur.LastTransitionTime
	}
	nodeMap, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&entry)
	if err != nil {
		return err
	}
	// Required-by-schema fields are written even when zero.
	nodeMap["programmed"], nodeMap["advertised"] = entry.Programmed, entry.Advertised
	nodeMap["reals"], nodeMap["healthyReals"] = int64(entry.Reals), int64(entry.HealthyReals)
	u := applyObject(rt, map[string]any{"nodes": []any{nodeMap}})
	if err := w.apply(ctx, u, NodeFieldManager(w.opts.NodeName), "node"); err != nil {
		return err
	}
	w.mu.Lock()
	w.applied[key] = appliedNode{uid: string(rt.UID), node: entry, at: time.Now()}
	w.mu.Unlock()
	return nil
}

func applyObject(rt *v1alpha1.LBRoute, st map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "LBRoute",
		"metadata":   map[string]any{"name": rt.Name, "namespace": rt.Namespace, "uid": string(rt.UID)},
		"status":     st,
	}}
}

func (w *StatusWriter) apply(ctx context.Context, u *unstructured.Unstructured, manager, kind string) error {
	if err := w.limiter.Wait(ctx); err != nil {
		return err
	}
	_, err := w.k.Dynamic.Resource(LBRouteResource).Namespace(u.GetNamespace()).
		ApplyStatus(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: manager, Force: true})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		// Deleted, or recreated under a new UID: the cache will tell.
		return nil
	}
	if err != nil {
		return fmt.Errorf("apply %s status of %s/%s: %w", kind, u.GetNamespace(), u.GetName(), err)
	}
	w.writes.WithLabelValues(kind).Inc()
	w.nWrites.Add(1)
	return nil
}

// LeaderStatus computes the route-wide status the leader writes, from the
// verdict and every node's entry; transition times are kept from the
// current conditions when a status did not change.
func LeaderStatus(rt *v1alpha1.LBRoute, v routeVerdict, mine v1alpha1.NodeStatus, now metav1.Time) v1alpha1.LBRouteStatus {
	nodes := slices.Clone(rt.Status.Nodes)
	found := false
	for i := range nodes {
		if nodes[i].Node == mine.Node {
			nodes[i], found = mine, true
		}
	}
	if !found {
		nodes = append(nodes, mine)
	}
	var programmed, advertised, healthy int
	for _, n := range nodes {
		if n.Programmed {
			programmed++
		}
		if n.Advertised {
			advertised++
		}
		if n.HealthyReals > 0 {
			healthy++
		}
	}
	total := len(nodes)
	conds := slices.Clone(rt.Status.Conditions)
	set := func(typ string, ok bool, reason, msg string) {
		st := metav1.ConditionFalse
		if ok {
			st = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&conds, metav1.Condition{
			Type: typ, Status: st, Reason: reason, Message: msg,
			ObservedGeneration: rt.Generation, LastTransitionTime: now,
		})
	}
	if !v.accepted {
		set(ConditionAccepted, false, v.reason, v.message)
		set(ConditionProgrammed, false, ReasonRejected, "the route was rejected")
		set(ConditionAdvertised, false, ReasonRejected, "the route was rejected")
		set(ConditionReady, false, ReasonRejected, "the route was rejected")
	} else {
		set(ConditionAccepted, true, ReasonAccepted, "the route is valid and its VIP is allowed")
		if programmed > 0 {
			set(ConditionProgrammed, true, ReasonProgrammed, fmt.Sprintf("programmed on %d of %d nodes", programmed, total))
		} else {
			set(ConditionProgrammed, false, ReasonNotProgrammed, fmt.Sprintf("programmed on none of %d nodes", total))
		}
		if advertised > 0 {
			set(ConditionAdvertised, true, ReasonAdvertised, fmt.Sprintf("advertised by %d of %d nodes", advertised, total))
		} else {
			set(ConditionAdvertised, false, ReasonNotAdvertised, fmt.Sprintf("advertised by none of %d nodes", total))
		}
		switch {
		case v.serviceForm && !v.serviceFound:
			set(ConditionReady, false, model.ReasonNoEndpoints, fmt.Sprintf("Service %q not found", rt.Spec.Service.Name))
		case v.reals == 0:
			set(ConditionReady, false, model.ReasonNoEndpoints, "the route has no ready endpoints")
		case healthy == 0:
			set(ConditionReady, false, ReasonNoHealthyReals, "no real server passes its health check")
		case advertised == 0:
			set(ConditionReady, false, ReasonNotAdvertised, "no node advertises the VIP")
		default:
			set(ConditionReady, true, ReasonReady, fmt.Sprintf("serving from %d of %d nodes", min(advertised, healthy), total))
		}
	}
	return v1alpha1.LBRouteStatus{
		Conditions:         conds,
		VSName:             v.vsName,
		Group:              v.group,
		Ports:              v.ports,
		RealServers:        v.reals,
		ObservedGeneration: rt.Generation,
	}
}

// sameLeaderStatus compares the leader-owned fields, ignoring transition
// times (LeaderStatus keeps them when nothing changed).
func sameLeaderStatus(cur *v1alpha1.LBRouteStatus, want v1alpha1.LBRouteStatus) bool {
	if cur.VSName != want.VSName || cur.Group != want.Group || cur.Ports != want.Ports ||
		cur.RealServers != want.RealServers || cur.ObservedGeneration != want.ObservedGeneration ||
		len(cur.Conditions) != len(want.Conditions) {
		return false
	}
	for _, c := range want.Conditions {
		o := meta.FindStatusCondition(cur.Conditions, c.Type)
		if o == nil || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || o.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	return true
}

func (w *StatusWriter) syncLeader(ctx context.Context, rt *v1alpha1.LBRoute, d routeDesired) error {
	v := d.result
	v.serviceForm = rt.Spec.Service != nil
	want := LeaderStatus(rt, v, d.node, metav1.Now())
	if sameLeaderStatus(&rt.Status, want) {
		return nil
	}
	conds := make([]any, 0, len(want.Conditions))
	for _, c := range want.Conditions {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		if err != nil {
			return err
		}
		conds = append(conds, m)
	}
	st := map[string]any{
		"conditions":         conds,
		"vsName":             want.VSName,
		"group":              want.Group,
		"ports":              want.Ports,
		"realServers":        int64(want.RealServers),
		"observedGeneration": want.ObservedGeneration,
	}
	if err := w.apply(ctx, applyObject(rt, st), LeaderFieldManager, "leader"); err != nil {
		return err
	}
	w.emitEvents(rt, want)
	return nil
}

// emitEvents reports transitions: a rejection (Warning, with the reason)
// and the first time the route becomes Ready.
func (w *StatusWriter) emitEvents(rt *v1alpha1.LBRoute, want v1alpha1.LBRouteStatus) {
	ref := rt.DeepCopy()
	ref.APIVersion, ref.Kind = v1alpha1.GroupVersion.String(), "LBRoute"
	oldAcc := meta.FindStatusCondition(rt.Status.Conditions, ConditionAccepted)
	newAcc := meta.FindStatusCondition(want.Conditions, ConditionAccepted)
	if newAcc.Status == metav1.ConditionFalse && (oldAcc == nil || oldAcc.Status != metav1.ConditionFalse || oldAcc.Reason != newAcc.Reason) {
		w.recorder.Event(ref, corev1.EventTypeWarning, newAcc.Reason, newAcc.Message)
	}
	oldReady := meta.FindStatusCondition(rt.Status.Conditions, ConditionReady)
	newReady := meta.FindStatusCondition(want.Conditions, ConditionReady)
	if newReady.Status == metav1.ConditionTrue && (oldReady == nil || oldReady.Status != metav1.ConditionTrue) {
		w.recorder.Event(ref, corev1.EventTypeNormal, ReasonReady, newReady.Message)
	}
}

// ReportNeighbors implements Reporter: it writes this node's EdgeNodeStatus
// when a session changes state at once (at most one write a second), and
// otherwise at most every NeighborInterval when only counters moved.
func (w *StatusWriter) ReportNeighbors(_ context.Context, neighbors []status.Neighbor) {
	if !w.opts.NeighborStatus {
		return
	}
	now := time.Now()
	out := make([]v1alpha1.BGPNeighborStatus, 0, len(neighbors))
	w.nbMu.Lock()
	defer w.nbMu.Unlock()
	prev := map[string]v1alpha1.BGPNeighborStatus{}
	for _, n := range w.nbDesired {
		prev[n.Address] = n
	}
	for _, n := range neighbors {
		b := v1alpha1.BGPNeighborStatus{
			Address: n.Address, ASN: int64(n.ASN), State: n.State,
			Received: int32(n.Received), Accepted: int32(n.Accepted), Advertised: int32(n.Advertised),
			LocalAddress: n.LocalAddress, GracefulRestart: n.GracefulRestart,
			LastError: truncate(n.LastError, 256), Source: n.Source,
		}
		if n.State == "established" {
			since := metav1.NewTime(now.Add(-time.Duration(n.UptimeSeconds) * time.Second).Truncate(time.Second))
			// Uptime is whole seconds: keep the earlier value unless the
			// session really restarted.
			if p, ok := prev[n.Address]; ok && p.EstablishedSince != nil && absDur(p.EstablishedSince.Sub(since.Time)) <= 2*time.Second {
				since = *p.EstablishedSince
			}
			b.EstablishedSince = &since
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b v1alpha1.BGPNeighborStatus) int { return strings.Compare(a.Address, b.Address) })
	if equality.Semantic.DeepEqual(out, w.nbDesired) {
		return
	}
	w.nbDesired = out
	select {
	case w.nbKick <- struct{}{}:
	default:
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// stateKey is what makes a neighbor write urgent: addresses and states.
func stateKey(ns []v1alpha1.BGPNeighborStatus) string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "%s=%s;", n.Address, n.State)
	}
	return b.String()
}

func (w *StatusWriter) neighborLoop(ctx context.Context) {
	if !w.opts.NeighborStatus {
		<-ctx.Done()
		return
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.nbKick:
		case <-timer.C:
		}
		w.nbMu.Lock()
		want := w.nbDesired
		urgent := stateKey(want) != stateKey(w.nbWritten) || w.nbWritten == nil
		due := w.nbLast.Add(w.opts.NeighborInterval)
		if urgent {
			due = w.nbLast.Add(time.Second)
		}
		same := w.nbWritten != nil && equality.Semantic.DeepEqual(want, w.nbWritten)
		w.nbMu.Unlock()
		if same {
			continue
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			continue
		}
		if err := w.writeNeighbors(ctx, want); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.failures.Inc()
			w.log.Warn("EdgeNodeStatus write failed", "err", err)
			timer.Reset(5 * time.Second)
			w.nbMu.Lock()
			w.nbLast = time.Now()
			w.nbMu.Unlock()
			continue
		}
		w.nbMu.Lock()
		w.nbWritten, w.nbLast = want, time.Now()
		w.nbMu.Unlock()
	}
}

func (w *StatusWriter) writeNeighbors(ctx context.Context, ns []v1alpha1.BGPNeighborStatus) error {
	var established int32
	list := make([]any, 0, len(ns))
	for i := range ns {
		if ns[i].State == "established" {
			established++
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&ns[i])
		if err != nil {
			return err
		}
		m["asn"], m["state"] = ns[i].ASN, ns[i].State
		list = append(list, m)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "EdgeNodeStatus",
		"metadata":   map[string]any{"name": w.opts.NodeName},
		"status": map[string]any{
			"neighbors":   list,
			"peers":       int64(len(ns)),
			"established": int64(established),
			"lastUpdated": metav1.Now().UTC().Format(time.RFC3339),
		},
	}}
	if err := w.limiter.Wait(ctx); err != nil {
		return err
	}
	_, err := w.k.Dynamic.Resource(EdgeNodeStatusResource).Apply(ctx, w.opts.NodeName, u,
		metav1.ApplyOptions{FieldManager: NodeFieldManager(w.opts.NodeName), Force: true})
	if err != nil {
		return fmt.Errorf("apply EdgeNodeStatus %s: %w", w.opts.NodeName, err)
	}
	w.writes.WithLabelValues("neighbors").Inc()
	w.nWrites.Add(1)
	return nil
}
