package kubestatus

import (
	"context"
	"fmt"
	"sync"
	"time"
	"unique"

	acv1alpha1 "github.com/arraynetworks/edgeagent/api/applyconfiguration/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	acmetav1 "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// nodeReporter keeps this node's LBRouteReports equal to its latest
// verdicts: it writes a slice only when an entry in it changed, so a
// resync or a restarted agent writes nothing.
type nodeReporter struct {
	w *Writer
	// own caches this node's reports (a label selector), so a restarted
	// agent compares with what it wrote before instead of rewriting it.
	own   cache.SharedIndexInformer
	queue workqueue.TypedRateLimitingInterface[int32]

	mu       sync.Mutex
	routes   map[string]*routeState // by "namespace/name"
	round    uint64                 // of report, to find routes gone
	reported bool                   // the agent reported at least once
	synced   bool                   // own is synced and slices chosen
	slices   int32                  // slice count in use (valid once synced and reported)
	owner    *acmetav1.OwnerReferenceApplyConfiguration
	ownerAt  time.Time
}

func newNodeReporter(w *Writer) *nodeReporter {
	n := &nodeReporter{
		w:      w,
		routes: map[string]*routeState{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[int32](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[int32]{Name: "lbroutereport"}),
	}
	sel := labels.SelectorFromSet(labels.Set{NodeLabel: NodeLabelValue(w.opts.NodeName)}).String()
	n.own = cache.NewSharedIndexInformer(w.c.reportListWatch(sel), &v1alpha1.LBRouteReport{}, 0, cache.Indexers{})
	_ = n.own.SetTransform(stripManagedFields)
	// Whatever happens to one of our objects (our own write, a deletion by
	// the garbage collector or an admin), compare it with what it should
	// say.
	requeue := func(obj any) {
		if r, ok := reportOf(obj); ok && r.Node == w.opts.NodeName {
			n.queue.Add(r.Slice)
		}
	}
	_, _ = n.own.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: requeue, UpdateFunc: func(_, o any) { requeue(o) },
		DeleteFunc: func(obj any) {
			// Deleted by the garbage collector, perhaps because the Node
			// was recreated: look the Node up again before rewriting.
			n.mu.Lock()
			n.owner, n.ownerAt = nil, time.Time{}
			n.mu.Unlock()
			requeue(obj)
		},
	})
	return n
}

// routeState is one route as this agent last reported it.
type routeState struct {
	entry   v1alpha1.ReportedRoute
	verdict Verdict
	round   uint64
}

// report records the agent's verdicts and queues the slices that changed;
// it returns the routes whose verdict changed (for the leader). It
// updates in place: a report of 10,000 unchanged routes allocates little.
func (n *nodeReporter) report(reports []RouteReport) []string {
	var changed []string
	n.mu.Lock()
	n.round++
	incremental := n.synced && n.reported
	s := n.slices
	var dirty []int32
	seen := map[int32]bool{}
	mark := func(key string) {
		if !incremental {
			return
		}
		if i := SliceOf(key, s); !seen[i] {
			seen[i] = true
			dirty = append(dirty, i)
		}
	}
	for _, r := range reports {
		key := r.Result.Key()
		e, v := entryOf(r)
		st := n.routes[key]
		if st == nil {
			st = &routeState{}
			n.routes[key] = st
			mark(key)
			changed = append(changed, key)
		} else {
			if st.entry != e {
				mark(key)
			}
			if st.verdict != v {
				changed = append(changed, key)
			}
		}
		st.entry, st.verdict, st.round = e, v, n.round
	}
	for key, st := range n.routes {
		if st.round != n.round {
			delete(n.routes, key)
			mark(key)
		}
	}
	if incremental {
		if c := SliceCount(len(n.routes), n.slices); c != n.slices {
			dirty = dirty[:0]
			for i := range max(c, n.slices) {
				dirty = append(dirty, i)
			}
			n.slices = c
		}
	}
	first := n.synced && !n.reported
	n.reported = true
	n.mu.Unlock()
	if first {
		n.choose()
	}
	for _, i := range dirty {
		n.queue.Add(i)
	}
	return changed
}

// verdict is the agent's own verdict on a route, for the leader.
func (n *nodeReporter) verdict(key string) (Verdict, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st, ok := n.routes[key]
	if !ok {
		return Verdict{}, false
	}
	return st.verdict, true
}

// choose picks the slice count once both the own cache and a first report
// are in: the count in use keeps unless the routes outgrew it, so a
// restarted agent writes into the slices it wrote before. Every slice is
// then compared.
func (n *nodeReporter) choose() {
	n.mu.Lock()
	if !n.synced || !n.reported {
		n.mu.Unlock()
		return
	}
	var current, highest int32
	for _, obj := range n.own.GetStore().List() {
		if r, ok := reportOf(obj); ok {
			if r.Slice == 0 {
				current = r.Slices
			}
			highest = max(highest, r.Slice+1)
		}
	}
	n.slices = SliceCount(len(n.routes), current)
	top := max(n.slices, highest)
	n.mu.Unlock()
	for i := range top {
		n.queue.Add(i)
	}
}

func (n *nodeReporter) run(ctx context.Context) error {
	go n.own.RunWithContext(ctx)
	go func() {
		<-ctx.Done()
		n.queue.ShutDown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), n.own.HasSynced, n.w.k.HasSynced) {
		return nil
	}
	n.mu.Lock()
	n.synced = true
	reported := n.reported
	n.mu.Unlock()
	if reported {
		n.choose()
	} else if n.starting() {
		// A fresh agent tells the leader it exists before its first
		// reconcile (which can take a while with thousands of routes), so
		// that the leader waits for it instead of writing every route
		// once without it and once more with it. So does one restarted
		// before its first report was in.
		n.queue.Add(0)
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { n.heartbeat(ctx) })
	}
	for n.processNext(ctx) {
	}
	return nil
}

// starting says whether the node has no report yet: no object at all, or
// only the presence report of an earlier start that never got further.
func (n *nodeReporter) starting() bool {
	keys := n.own.GetStore().ListKeys()
	if len(keys) == 0 {
		return true
	}
	cur, ok := n.cached(ReportName(n.w.opts.NodeName, 0))
	return len(keys) == 1 && ok && cur.Slices == 0
}

// heartbeat refreshes the presence report until the first report replaces
// it, so that the leader goes on waiting for a node whose first reconcile
// is slow rather than writing every route twice.
func (n *nodeReporter) heartbeat(ctx context.Context) {
	_ = wait.PollUntilContextCancel(ctx, n.w.opts.StartupHeartbeat, false, func(context.Context) (bool, error) {
		n.mu.Lock()
		reported := n.reported
		n.mu.Unlock()
		if !reported {
			n.queue.Add(0)
		}
		return reported, nil
	})
}

func (n *nodeReporter) processNext(ctx context.Context) bool {
	i, quit := n.queue.Get()
	if quit {
		return false
	}
	defer n.queue.Done(i)
	if err := n.sync(ctx, i); err != nil {
		if ctx.Err() != nil {
			return true
		}
		n.w.failures.Inc()
		n.w.log.Warn("LBRouteReport write failed", "slice", i, "err", err)
		n.queue.AddRateLimited(i)
		return true
	}
	n.queue.Forget(i)
	return true
}

// sync makes slice i say what it should: written when it differs, deleted
// when the node no longer has that many slices.
func (n *nodeReporter) sync(ctx context.Context, i int32) error {
	node := n.w.opts.NodeName
	name := ReportName(node, i)
	cur, _ := n.cached(name)
	n.mu.Lock()
	reported, slices := n.reported, n.slices
	var routes []v1alpha1.ReportedRoute
	if reported && i < slices {
		for key, st := range n.routes {
			if SliceOf(key, slices) == i {
				routes = append(routes, st.entry)
			}
		}
	}
	n.mu.Unlock()
	var heartbeat *metav1.Time
	switch {
	case !reported:
		if i != 0 || !n.starting() {
			return nil // keep a report from before a restart until the first reconcile
		}
		if cur != nil && cur.Heartbeat != nil && time.Since(cur.Heartbeat.Time) < n.w.opts.StartupHeartbeat/2 {
			return nil
		}
		slices = 0 // presence
		now := metav1.Now()
		heartbeat = &now
	case i >= slices:
		if cur == nil {
			return nil
		}
		if err := n.w.c.deleteReport(ctx, name, cur.UID); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete LBRouteReport %s: %w", name, err)
		}
		n.w.wrote("node")
		return nil
	}
	want := &v1alpha1.LBRouteReport{Node: node, Slice: i, Slices: slices, Advertises: n.w.opts.Advertises}
	want.Routes = Slice(routes, 1)[0]
	want.Summary = Summarize(want.Routes, want.Advertises)
	owner := n.ownerRef(ctx)
	if cur != nil && heartbeat == nil && sameReport(cur, want) && (owner == nil || hasOwner(cur, *owner.UID)) && (owner != nil || len(cur.OwnerReferences) == 0) {
		return nil
	}
	// Applied without a heartbeat, the field (this manager's) goes.
	ac := acv1alpha1.LBRouteReport(name).
		WithLabels(map[string]string{NodeLabel: NodeLabelValue(node)}).
		WithNode(node).WithSlice(i).WithSlices(slices).WithAdvertises(want.Advertises).
		WithSummary(acv1alpha1.LBRouteReportSummary().
			WithRoutes(want.Summary.Routes).WithProgrammed(want.Summary.Programmed).WithFailing(want.Summary.Failing))
	if heartbeat != nil {
		ac.WithHeartbeat(*heartbeat)
	}
	if owner != nil {
		ac.WithOwnerReferences(owner)
	}
	for _, r := range want.Routes {
		e := acv1alpha1.ReportedRoute().WithNamespace(r.Namespace).WithName(r.Name).WithGeneration(r.Generation)
		if r.Programmed {
			e.WithProgrammed(true)
		}
		if r.Advertised {
			e.WithAdvertised(true)
		}
		if r.Reals != 0 {
			e.WithReals(r.Reals)
		}
		if r.HealthyReals != 0 {
			e.WithHealthyReals(r.HealthyReals)
		}
		if r.Message != "" {
			e.WithMessage(r.Message)
		}
		ac.WithRoutes(e)
	}
	if err := n.w.limiter.Wait(ctx); err != nil {
		return err
	}
	if err := n.w.c.applyReport(ctx, name, ac, NodeFieldManager(node)); err != nil {
		return fmt.Errorf("apply LBRouteReport %s: %w", name, err)
	}
	n.w.wrote("node")
	return nil
}

func (n *nodeReporter) cached(name string) (*v1alpha1.LBRouteReport, bool) {
	obj, ok, _ := n.own.GetStore().GetByKey(name)
	if !ok {
		return nil, false
	}
	return reportOf(obj)
}

// ownerRef makes the Node own the reports, so they are deleted with it. It
// is looked up once (again after five minutes when that failed: a Node
// that appears later, or RBAC fixed).
func (n *nodeReporter) ownerRef(ctx context.Context) *acmetav1.OwnerReferenceApplyConfiguration {
	n.mu.Lock()
	owner, at := n.owner, n.ownerAt
	n.mu.Unlock()
	if owner != nil || (!at.IsZero() && time.Since(at) < 5*time.Minute) {
		return owner
	}
	nd, err := n.w.k.Client.CoreV1().Nodes().Get(ctx, n.w.opts.NodeName, metav1.GetOptions{})
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ownerAt = time.Now()
	if err != nil {
		n.w.log.Warn("cannot read this node's Node object: its LBRouteReports are not garbage-collected with it", "node", n.w.opts.NodeName, "err", err)
		return nil
	}
	n.owner = acmetav1.OwnerReference().WithAPIVersion("v1").WithKind("Node").WithName(nd.Name).WithUID(nd.UID)
	return n.owner
}

func hasOwner(r *v1alpha1.LBRouteReport, uid types.UID) bool {
	for _, o := range r.OwnerReferences {
		if o.Kind == "Node" && o.UID == uid {
			return true
		}
	}
	return false
}

func sameReport(a, b *v1alpha1.LBRouteReport) bool {
	return (a.Heartbeat == nil) == (b.Heartbeat == nil) && a.Node == b.Node && a.Slice == b.Slice && a.Slices == b.Slices && a.Advertises == b.Advertises &&
		a.Summary == b.Summary && len(a.Routes) == len(b.Routes) && equalRoutes(a.Routes, b.Routes)
}

func equalRoutes(a, b []v1alpha1.ReportedRoute) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func reportOf(obj any) (*v1alpha1.LBRouteReport, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	r, ok := obj.(*v1alpha1.LBRouteReport)
	return r, ok
}

// stripManagedFields drops managedFields from cached reports (nothing here
// reads them) and makes every node's entries share one copy of each
// namespace and name: the leader holds K copies of every route otherwise.
func stripManagedFields(obj any) (any, error) {
	if r, ok := obj.(*v1alpha1.LBRouteReport); ok {
		r.ManagedFields = nil
		for i := range r.Routes {
			e := &r.Routes[i]
			e.Namespace, e.Name = unique.Make(e.Namespace).Value(), unique.Make(e.Name).Value()
			if e.Message != "" {
				e.Message = unique.Make(e.Message).Value()
			}
		}
	}
	return obj, nil
}
