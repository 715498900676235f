package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"unique"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// LBRouteResource is the LBRoute resource.
var LBRouteResource = v1alpha1.GroupVersion.WithResource("lbroutes")

// EdgeNodeStatusResource is the per-node BGP status resource.
var EdgeNodeStatusResource = v1alpha1.GroupVersion.WithResource("edgenodestatuses")

// Calico's per-node address annotations, written by calico-node.
const (
	CalicoIPv4Annotation = "projectcalico.org/IPv4Address"
	CalicoIPv6Annotation = "projectcalico.org/IPv6Address"
)

// ConnObserver is told about watch traffic and failures, so that the
// apiserver connection's health can be reported
// (healthcheck.APIServerMonitor implements it).
type ConnObserver interface {
	ObserveEvent()
	WatchError(err error)
}

// KubeOptions configure the Kubernetes source.
type KubeOptions struct {
	// Config reaches the apiserver; build it with
	// healthcheck.APIServerMonitor.Configure so dead connections are found.
	Config *rest.Config
	// NodeName is this agent's node (never its own BGP peer).
	NodeName string
	// NodePeerSelector selects Nodes to peer with (label selector); ""
	// turns node peer discovery off.
	NodePeerSelector string
	// Observer, when set, hears of every watch event and watch failure.
	Observer ConnObserver
	Logger   *slog.Logger
}

// Kube is the Kubernetes source: shared informers for LBRoutes (all
// namespaces), Services, EndpointSlices, Namespaces and, when peer discovery
// is on, the selected Nodes. It implements Source; the status Reporter and
// the auto-LBRoute controller share its informers and clients.
type Kube struct {
	opts KubeOptions
	log  *slog.Logger

	// Dynamic and Client are the clients the informers use.
	Dynamic dynamic.Interface
	Client  kubernetes.Interface

	factory     informers.SharedInformerFactory
	nodeFactory informers.SharedInformerFactory
	routes      cache.SharedIndexInformer
	services    cache.SharedIndexInformer
	slices      cache.SharedIndexInformer
	namespaces  cache.SharedIndexInformer
	nodes       cache.SharedIndexInformer
	svcLister   corelisters.ServiceLister

	mu      sync.Mutex
	changed func()
	started bool
}

const sliceByServiceIndex = "service"

// NewKube builds the clients and informers; Run starts them.
func NewKube(opts KubeOptions) (*Kube, error) {
	if opts.Config == nil {
		return nil, fmt.Errorf("kubernetes source: no rest config")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.NodePeerSelector != "" {
		if _, err := labels.Parse(opts.NodePeerSelector); err != nil {
			return nil, fmt.Errorf("bgp.nodePeers.labelSelector %q: %w", opts.NodePeerSelector, err)
		}
	}
	dyn, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes source: dynamic client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes source: client: %w", err)
	}
	k := &Kube{opts: opts, log: opts.Logger.With("component", "watcher"), Dynamic: dyn, Client: cs}

	k.factory = informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(stripManagedFields))
	k.services = k.factory.Core().V1().Services().Informer()
	k.svcLister = k.factory.Core().V1().Services().Lister()
	k.slices = k.factory.Discovery().V1().EndpointSlices().Informer()
	k.namespaces = k.factory.Core().V1().Namespaces().Informer()
	if err := k.slices.AddIndexers(cache.Indexers{sliceByServiceIndex: sliceServiceKey}); err != nil {
		return nil, err
	}
	if opts.NodePeerSelector != "" {
		k.nodeFactory = informers.NewSharedInformerFactoryWithOptions(cs, 0,
			informers.WithTransform(stripManagedFields),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = opts.NodePeerSelector }))
		k.nodes = k.nodeFactory.Core().V1().Nodes().Informer()
	}
	lw, err := lbrouteListWatch(opts.Config, dyn)
	if err != nil {
		return nil, fmt.Errorf("kubernetes source: lbroute watch: %w", err)
	}
	// No example object: the store holds typed LBRoutes and, for objects
	// that do not decode, unstructured ones (lbroutewatch.go); a typed
	// example would make the reflector drop the latter.
	k.routes = cache.NewSharedIndexInformer(lw, nil, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := k.routes.SetTransform(toLBRoute); err != nil {
		return nil, err
	}

	for _, inf := range k.informers() {
		if err := inf.SetWatchErrorHandlerWithContext(k.watchError); err != nil {
			return nil, err
		}
	}
	if _, err := k.routes.AddEventHandler(k.handler(routeChanged)); err != nil {
		return nil, err
	}
	if _, err := k.services.AddEventHandler(k.handler(serviceChanged)); err != nil {
		return nil, err
	}
	if _, err := k.slices.AddEventHandler(k.handler(rvChanged)); err != nil {
		return nil, err
	}
	// Namespaces matter to the auto-LBRoute controller only; translation
	// does not depend on them, so they never wake the agent.
	quiet := func(any) { k.event(false) }
	if _, err := k.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: quiet, DeleteFunc: quiet, UpdateFunc: func(_, n any) { quiet(n) },
	}); err != nil {
		return nil, err
	}
	if k.nodes != nil {
		if _, err := k.nodes.AddEventHandler(k.handler(nodeChanged)); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *Kube) informers() []cache.SharedIndexInformer {
	out := []cache.SharedIndexInformer{k.routes, k.services, k.slices, k.namespaces}
	if k.nodes != nil {
		out = append(out, k.nodes)
	}
	return out
}

// Routes, Services, Namespaces and EndpointSlices expose the shared
// informers to the Reporter and the auto-LBRoute controller.
func (k *Kube) Routes() cache.SharedIndexInformer { return k.routes }

// RESTConfig is the configuration the source's clients were made with
// (its transport carries the apiserver connection health check), for
// other clients of the agent to share the connection.
func (k *Kube) RESTConfig() *rest.Config              { return k.opts.Config }
func (k *Kube) Services() cache.SharedIndexInformer   { return k.services }
func (k *Kube) Namespaces() cache.SharedIndexInformer { return k.namespaces }

func (k *Kube) watchError(ctx context.Context, r *cache.Reflector, err error) {
	if k.opts.Observer != nil {
		k.opts.Observer.WatchError(err)
	}
	cache.DefaultWatchErrorHandler(ctx, r, err)
}

// handler notifies the agent when relevant is true for an update (adds and
// deletes always count) and reports every event to the observer.
func (k *Kube) handler(relevant func(old, new any) bool) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { k.event(true) },
		UpdateFunc: func(old, new any) {
			k.event(relevant(old, new))
		},
		DeleteFunc: func(any) { k.event(true) },
	}
}

func (k *Kube) event(notify bool) {
	if k.opts.Observer != nil {
		k.opts.Observer.ObserveEvent()
	}
	if !notify {
		return
	}
	k.mu.Lock()
	f := k.changed
	k.mu.Unlock()
	if f != nil {
		f()
	}
}

// routeChanged ignores status-only updates: agents writing status must not
// make every agent recompute its desired state.
func routeChanged(old, new any) bool {
	o, ok1 := old.(*v1alpha1.LBRoute)
	n, ok2 := new.(*v1alpha1.LBRoute)
	if !ok1 || !ok2 {
		return rvChanged(old, new)
	}
	return o.Generation != n.Generation || !equality.Semantic.DeepEqual(o.Spec, n.Spec)
}

func serviceChanged(old, new any) bool {
	o, ok1 := old.(*corev1.Service)
	n, ok2 := new.(*corev1.Service)
	if !ok1 || !ok2 {
		return true
	}
	return !equality.Semantic.DeepEqual(o.Spec.Ports, n.Spec.Ports)
}

func nodeChanged(old, new any) bool {
	o, ok1 := old.(*corev1.Node)
	n, ok2 := new.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	return o.Annotations[CalicoIPv4Annotation] != n.Annotations[CalicoIPv4Annotation] ||
		o.Annotations[CalicoIPv6Annotation] != n.Annotations[CalicoIPv6Annotation]
}

func rvChanged(old, new any) bool {
	o, err1 := meta.Accessor(old)
	n, err2 := meta.Accessor(new)
	return err1 != nil || err2 != nil || o.GetResourceVersion() != n.GetResourceVersion()
}

// Run starts the informers and blocks until ctx ends.
func (k *Kube) Run(ctx context.Context, changed func()) error {
	k.mu.Lock()
	if k.started {
		k.mu.Unlock()
		return fmt.Errorf("kubernetes source: Run called twice")
	}
	k.started = true
	k.changed = changed
	k.mu.Unlock()

	// One request first, so that the informers' requests share the
	// connection it opens instead of racing to dial several.
	if _, err := k.Client.Discovery().ServerVersion(); err != nil {
		k.log.Warn("apiserver not reachable yet; informers will retry", "err", err)
	}
	k.factory.Start(ctx.Done())
	if k.nodeFactory != nil {
		k.nodeFactory.Start(ctx.Done())
	}
	go k.routes.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), k.HasSynced) {
		k.shutdown()
		return nil // stopped before the first sync: a normal shutdown
	}
	k.log.Info("kubernetes source synced", "lbroutes", len(k.routes.GetStore().ListKeys()))
	if changed != nil {
		changed()
	}
	<-ctx.Done()
	k.shutdown()
	return nil
}

func (k *Kube) shutdown() {
	k.factory.Shutdown()
	if k.nodeFactory != nil {
		k.nodeFactory.Shutdown()
	}
}

// HasSynced reports whether every informer finished its initial list.
func (k *Kube) HasSynced() bool {
	for _, inf := range k.informers() {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// Synced implements Source.
func (k *Kube) Synced() bool { return k.HasSynced() }

// Snapshot implements Source. Routes are the informer's cached objects
// (shared: callers must not modify them); endpoints are read from the
// informer caches when looked up.
func (k *Kube) Snapshot() Snapshot {
	var s Snapshot
	// The store's keys are "namespace/name": sorting them gives the order
	// without making a key per comparison (280,000 strings a reconcile at
	// 10,000 routes). A route deleted in between is simply left out; its
	// deletion wakes the agent again.
	store := k.routes.GetStore()
	keys := store.ListKeys()
	slices.Sort(keys)
	s.Routes = make([]*v1alpha1.LBRoute, 0, len(keys))
	for _, key := range keys {
		obj, ok, _ := store.GetByKey(key)
		if !ok {
			continue
		}
		switch o := obj.(type) {
		case *v1alpha1.LBRoute:
			s.Routes = append(s.Routes, o)
		case *unstructured.Unstructured:
			s.Errors = append(s.Errors, SourceError{
				Source: "lbroute/" + o.GetNamespace() + "/" + o.GetName(),
				Error:  o.GetAnnotations()[decodeErrorAnnotation],
			})
		}
	}
	s.Endpoints = k.Endpoints
	if k.nodes != nil {
		s.NodePeers = k.nodePeers()
	}
	return s
}

// Endpoints resolves a Service to its ports and EndpointSlice endpoints.
func (k *Kube) Endpoints(ns, name string) (model.ServiceEndpoints, bool) {
	svc, err := k.svcLister.Services(ns).Get(name)
	if err != nil {
		return model.ServiceEndpoints{}, false
	}
	var out model.ServiceEndpoints
	for _, p := range svc.Spec.Ports {
		out.Ports = append(out.Ports, model.ServicePort{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol)})
	}
	objs, _ := k.slices.GetIndexer().ByIndex(sliceByServiceIndex, ns+"/"+name)
	for _, obj := range objs {
		es, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		out.Endpoints = append(out.Endpoints, SliceEndpoints(es)...)
	}
	return out, true
}

// SliceEndpoints converts one EndpointSlice. Unset conditions take the
// defaults the EndpointSlice API documents: ready unless said otherwise,
// serving as ready, not terminating.
func SliceEndpoints(es *discoveryv1.EndpointSlice) []model.Endpoint {
	if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
		return nil
	}
	ports := map[string]int32{}
	for _, p := range es.Ports {
		if p.Port == nil {
			continue
		}
		n := ""
		if p.Name != nil {
			n = *p.Name
		}
		ports[n] = *p.Port
	}
	var out []model.Endpoint
	for _, ep := range es.Endpoints {
		ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
		serving := ready
		if ep.Conditions.Serving != nil {
			serving = *ep.Conditions.Serving
		}
		terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
		for _, a := range ep.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			out = append(out, model.Endpoint{IP: ip, Ready: ready, Serving: serving, Terminating: terminating, Ports: ports})
		}
	}
	return out
}

func (k *Kube) nodePeers() []NodePeer {
	var out []NodePeer
	for _, obj := range k.nodes.GetStore().List() {
		n, ok := obj.(*corev1.Node)
		if !ok || n.Name == k.opts.NodeName {
			continue
		}
		out = append(out, NodePeersOf(n)...)
	}
	slices.SortFunc(out, func(a, b NodePeer) int {
		return cmpOr(strings.Compare(a.Node, b.Node), a.Address.Compare(b.Address))
	})
	return out
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// NodePeersOf reads a Node's Calico address annotations ("10.0.0.5/24").
func NodePeersOf(n *corev1.Node) []NodePeer {
	var out []NodePeer
	for _, ann := range []string{CalicoIPv4Annotation, CalicoIPv6Annotation} {
		v := n.Annotations[ann]
		if v == "" {
			continue
		}
		a, err := netip.ParseAddr(strings.SplitN(v, "/", 2)[0])
		if err != nil {
			continue
		}
		out = append(out, NodePeer{Node: n.Name, Address: a.Unmap()})
	}
	return out
}

func sliceServiceKey(obj any) ([]string, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	svc := es.Labels[discoveryv1.LabelServiceName]
	if svc == "" {
		return nil, nil
	}
	return []string{es.Namespace + "/" + svc}, nil
}

// decodeErrorAnnotation carries, on an LBRoute kept in unstructured form,
// why it could not be decoded.
const decodeErrorAnnotation = "edgeagent.internal/decode-error"

// toLBRoute converts cached LBRoutes to the typed form once, on arrival.
// An object that does not decode stays unstructured with the error noted,
// so that one bad object is reported instead of breaking the whole list.
func toLBRoute(obj any) (any, error) {
	if rt, ok := obj.(*v1alpha1.LBRoute); ok {
		trimLBRoute(rt)
		return rt, nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	var rt v1alpha1.LBRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &rt, false); err != nil {
		ann := u.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[decodeErrorAnnotation] = err.Error()
		u.SetAnnotations(ann)
		u.SetManagedFields(nil)
		return u, nil
	}
	trimLBRoute(&rt)
	return &rt, nil
}

// trimLBRoute drops what the agent never reads from a cached LBRoute.
func trimLBRoute(rt *v1alpha1.LBRoute) {
	rt.ManagedFields = nil
	// Every route's conditions say much the same: one copy of each string
	// for all of them.
	for i := range rt.Status.Conditions {
		c := &rt.Status.Conditions[i]
		c.Type, c.Status, c.Reason = unique.Make(c.Type).Value(), metav1.ConditionStatus(unique.Make(string(c.Status)).Value()), unique.Make(c.Reason).Value()
		c.Message = unique.Make(c.Message).Value()
	}
	// Nothing reads an LBRoute's annotations, and kubectl's copy of the
	// whole object (client-side apply) would double what is cached. Status
	// writes from the cached copy are safe without it (the status
	// subresource takes nothing else); the auto-LBRoute controller updates
	// only the routes it created, which carry none.
	delete(rt.Annotations, corev1.LastAppliedConfigAnnotation)
}

// stripManagedFields drops managedFields from cached objects: the agent
// never reads them and they are often the largest part of an object.
// (Annotations stay: a Service's status is written from the cached copy.)
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}
