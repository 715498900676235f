package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// Auto-LBRoute labels and annotations (user contract).
const (
	// AutoNamespaceLabel, set to "true" on a Namespace, makes every
	// type: LoadBalancer Service in it get an LBRoute.
	AutoNamespaceLabel = "need-auto-LBRoute"
	// AutoRouteLabel marks LBRoutes the controller created; only those are
	// ever updated or deleted by it.
	AutoRouteLabel = "apv.arraynetworks.com/auto-lbroute"
	// VIPAnnotation on a Service asks for a VIP (like spec.loadBalancerIP,
	// which is deprecated upstream).
	VIPAnnotation = "apv.arraynetworks.com/vip"
)

// AutoOptions configure the auto-LBRoute controller.
type AutoOptions struct {
	// Pools are the agent's vipPools: VIPs are allocated from the first
	// pool that admits the Service's namespace.
	Pools    []model.Pool
	NodeName string
	Logger   *slog.Logger
}

// AutoLBRoute keeps one LBRoute per type: LoadBalancer Service in
// namespaces labelled need-auto-LBRoute=true: same name, owned by the
// Service, VIP from spec.loadBalancerIP, the apv.arraynetworks.com/vip
// annotation, or the pools; ports from the Service. It writes the VIP into
// the Service's status.loadBalancer.ingress. Only one agent runs it at a
// time (Run is called while holding the Lease).
type AutoLBRoute struct {
	k    *Kube
	opts AutoOptions
	log  *slog.Logger

	// recorder is set per leadership term by Run (a broadcaster cannot be
	// restarted after Shutdown); only Run's goroutine uses it.
	recorder record.EventRecorder
	scheme   *runtime.Scheme

	mu    sync.Mutex
	queue workqueue.TypedRateLimitingInterface[string]
	// pending are VIPs allocated this term that the route cache may not
	// show yet, so two Services never get the same one.
	pending map[netip.Addr]string
}

// NewAutoLBRoute registers the controller's handlers on the source's
// informers. It does nothing until Run.
func NewAutoLBRoute(k *Kube, opts AutoOptions) (*AutoLBRoute, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &AutoLBRoute{k: k, opts: opts, log: opts.Logger.With("component", "auto-lbroute")}
	a.scheme = runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(a.scheme)

	byKey := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.enqueueObj(obj) },
		UpdateFunc: func(_, obj any) { a.enqueueObj(obj) },
		DeleteFunc: func(obj any) { a.enqueueObj(obj) },
	}
	if _, err := k.Services().AddEventHandler(byKey); err != nil {
		return nil, err
	}
	if _, err := k.Routes().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			rt, ok := obj.(*v1alpha1.LBRoute)
			return ok && rt.Labels[AutoRouteLabel] == "true"
		},
		Handler: byKey,
	}); err != nil {
		return nil, err
	}
	if _, err := k.Namespaces().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { a.enqueueNamespace(obj) },
		UpdateFunc: func(old, obj any) {
			o, _ := old.(*corev1.Namespace)
			n, _ := obj.(*corev1.Namespace)
			if o == nil || n == nil || o.Labels[AutoNamespaceLabel] != n.Labels[AutoNamespaceLabel] {
				a.enqueueNamespace(obj)
			}
		},
		DeleteFunc: func(obj any) { a.enqueueNamespace(obj) },
	}); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *AutoLBRoute) add(key string) {
	a.mu.Lock()
	q := a.queue
	a.mu.Unlock()
	if q != nil {
		q.Add(key)
	}
}

func (a *AutoLBRoute) enqueueObj(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		a.add(key)
	}
}

// enqueueNamespace queues every Service and auto-created route of the
// namespace.
func (a *AutoLBRoute) enqueueNamespace(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	for _, inf := range []cache.SharedIndexInformer{a.k.Services(), a.k.Routes()} {
		objs, _ := inf.GetIndexer().ByIndex(cache.NamespaceIndex, ns.Name)
		for _, o := range objs {
			a.enqueueObj(o)
		}
	}
}

// Run reconciles until ctx ends (the end of this agent's leadership).
func (a *AutoLBRoute) Run(ctx context.Context) error {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "auto-lbroute"})
	a.mu.Lock()
	a.queue = q
	a.pending = map[netip.Addr]string{}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.queue = nil
		a.mu.Unlock()
		q.ShutDown()
	}()
	bcast := record.NewBroadcaster()
	bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.k.Client.CoreV1().Events("")})
	defer bcast.Shutdown()
	a.recorder = bcast.NewRecorder(a.scheme, corev1.EventSource{Component: "edgeagent-auto-lbroute", Host: a.opts.NodeName})
	if !cache.WaitForCacheSync(ctx.Done(), a.k.Services().HasSynced, a.k.Routes().HasSynced, a.k.Namespaces().HasSynced) {
		return ctx.Err()
	}
	// A new term starts with a full pass: changes made while no one led.
	for _, inf := range []cache.SharedIndexInformer{a.k.Services(), a.k.Routes()} {
		for _, key := range inf.GetStore().ListKeys() {
			q.Add(key)
		}
	}
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	a.log.Info("auto-LBRoute controller running")
	for {
		key, quit := q.Get()
		if quit {
			return nil
		}
		if err := a.reconcile(ctx, key); err != nil && ctx.Err() == nil {
			a.log.Warn("auto-LBRoute reconcile failed", "key", key, "err", err)
			q.AddRateLimited(key)
		} else {
			q.Forget(key)
		}
		q.Done(key)
	}
}

func (a *AutoLBRoute) reconcile(ctx context.Context, key string) error {
	nsName, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	var svc *corev1.Service
	if obj, ok, _ := a.k.Services().GetStore().GetByKey(key); ok {
		svc, _ = obj.(*corev1.Service)
	}
	var route *v1alpha1.LBRoute
	if obj, ok, _ := a.k.Routes().GetStore().GetByKey(key); ok {
		route, _ = obj.(*v1alpha1.LBRoute)
	}
	enabled := false
	if obj, ok, _ := a.k.Namespaces().GetStore().GetByKey(nsName); ok {
		if ns, _ := obj.(*corev1.Namespace); ns != nil && ns.DeletionTimestamp == nil {
			enabled = ns.Labels[AutoNamespaceLabel] == "true"
		}
	}
	ours := route != nil && route.Labels[AutoRouteLabel] == "true"
	want := enabled && svc != nil && svc.DeletionTimestamp == nil && svc.Spec.Type == corev1.ServiceTypeLoadBalancer

	if !want {
		if ours {
			return a.remove(ctx, svc, route)
		}
		return nil
	}
	if route != nil && !ours {
		a.recorder.Eventf(svc, corev1.EventTypeWarning, "LBRouteExists",
			"LBRoute %s exists and was not created for this Service; leaving it alone", key)
		return nil
	}
	if ours && !ownedBy(route, svc) {
		// Ours, but for an earlier Service of the same name: replace.
		if err := a.remove(ctx, nil, route); err != nil {
			return err
		}
		route = nil
	}
	spec, problem := a.specFor(svc, route)
	if problem != "" {
		a.recorder.Event(svc, corev1.EventTypeWarning, "AutoLBRouteFailed", problem)
		return nil
	}
	if route == nil {
		if err := a.create(ctx, svc, spec); err != nil {
			return err
		}
		a.recorder.Eventf(svc, corev1.EventTypeNormal, "LBRouteCreated", "created LBRoute %s with VIP %s", key, spec.VSIP)
	} else if !equality.Semantic.DeepEqual(route.Spec, spec) {
		if err := a.update(ctx, route, spec); err != nil {
			return err
		}
	}
	return a.setIngress(ctx, svc, spec.VSIP)
}

func ownedBy(rt *v1alpha1.LBRoute, svc *corev1.Service) bool {
	for _, o := range rt.OwnerReferences {
		if o.Kind == "Service" && o.Name == svc.Name && o.UID == svc.UID {
			return true
		}
	}
	return false
}

// specFor builds the LBRoute spec for a Service, keeping every field a
// user could not have set through the Service as it was.
func (a *AutoLBRoute) specFor(svc *corev1.Service, cur *v1alpha1.LBRoute) (v1alpha1.LBRouteSpec, string) {
	var spec v1alpha1.LBRouteSpec
	if cur != nil {
		spec = *cur.Spec.DeepCopy()
	}
	spec.Service = &v1alpha1.ServiceRef{Name: svc.Name}
	spec.RealServers = nil
	if spec.Policy == "" {
		spec.Policy = v1alpha1.Policy(model.RoundRobin)
	}
	spec.Ports = nil
	for _, p := range svc.Spec.Ports {
		if p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP && p.Protocol != "" {
			continue
		}
		proto := v1alpha1.Protocol(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		spec.Ports = append(spec.Ports, v1alpha1.LBRoutePort{Port: p.Port, Protocol: proto})
	}
	if len(spec.Ports) == 0 {
		return spec, "the Service has no TCP or UDP port"
	}
	vip, problem := a.vipFor(svc, cur)
	if problem != "" {
		return spec, problem
	}
	spec.VSIP = vip.String()
	return spec, ""
}

// vipFor picks the Service's VIP: the one it asks for, else the one it
// already has (route or ingress), else a free one from a pool admitting its
// namespace. A requested VIP outside the pools is still used: the agents
// then reject the route with VIPNotAllowed, visible in its status.
func (a *AutoLBRoute) vipFor(svc *corev1.Service, cur *v1alpha1.LBRoute) (netip.Addr, string) {
	asked := svc.Annotations[VIPAnnotation]
	if asked == "" {
		asked = svc.Spec.LoadBalancerIP
	}
	if asked != "" {
		ip, err := netip.ParseAddr(asked)
		if err != nil {
			return netip.Addr{}, fmt.Sprintf("requested VIP %q is not an IP address", asked)
		}
		return ip, ""
	}
	used := a.usedVIPs(svc)
	var cands []netip.Addr
	if cur != nil {
		if ip, err := netip.ParseAddr(cur.Spec.VSIP); err == nil {
			cands = append(cands, ip)
		}
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			cands = append(cands, ip)
		}
	}
	for _, ip := range cands {
		if model.AnyAdmits(a.opts.Pools, svc.Namespace, ip) && !used[ip] {
			return ip, ""
		}
	}
	for _, p := range a.opts.Pools {
		if !p.Admits(svc.Namespace, p.CIDR.Addr()) {
			continue
		}
		if ip, ok := firstFree(p.CIDR, used); ok {
			a.mu.Lock()
			a.pending[ip] = svc.Namespace + "/" + svc.Name
			a.mu.Unlock()
			return ip, ""
		}
	}
	return netip.Addr{}, fmt.Sprintf("no free VIP in any vipPool admitting namespace %q", svc.Namespace)
}

// usedVIPs are the VIPs of every LBRoute but this Service's own, plus
// allocations not yet visible in the cache.
func (a *AutoLBRoute) usedVIPs(svc *corev1.Service) map[netip.Addr]bool {
	self := svc.Namespace + "/" + svc.Name
	used := map[netip.Addr]bool{}
	for _, obj := range a.k.Routes().GetStore().List() {
		rt, ok := obj.(*v1alpha1.LBRoute)
		if !ok || rt.Namespace+"/"+rt.Name == self {
			continue
		}
		if ip, err := netip.ParseAddr(rt.Spec.VSIP); err == nil {
			used[ip.Unmap()] = true
		}
	}
	a.mu.Lock()
	for ip, owner := range a.pending {
		if owner != self {
			used[ip] = true
		}
	}
	a.mu.Unlock()
	return used
}

// firstFree returns the lowest unused address of the prefix, skipping the
// network and broadcast addresses of IPv4 prefixes shorter than /31. The
// scan is bounded so a huge IPv6 pool cannot stall the controller.
func firstFree(p netip.Prefix, used map[netip.Addr]bool) (netip.Addr, bool) {
	p = p.Masked()
	ip := p.Addr()
	v4small := p.Addr().Is4() && p.Bits() < 31
	if v4small || p.Addr().Is6() {
		ip = ip.Next() // skip the network (v4) / subnet-router anycast (v6) address
	}
	for i := 0; i < 1<<16 && ip.IsValid() && p.Contains(ip); i++ {
		next := ip.Next()
		if v4small && (!next.IsValid() || !p.Contains(next)) {
			break // broadcast
		}
		if !used[ip] {
			return ip, true
		}
		ip = next
	}
	return netip.Addr{}, false
}

func (a *AutoLBRoute) create(ctx context.Context, svc *corev1.Service, spec v1alpha1.LBRouteSpec) error {
	rt := &v1alpha1.LBRoute{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "LBRoute"},
		ObjectMeta: metav1.ObjectMeta{
			Name: svc.Name, Namespace: svc.Namespace,
			Labels: map[string]string{AutoRouteLabel: "true", "app.kubernetes.io/managed-by": "edgeagent"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: ptr.To(true),
			}},
		},
		Spec: spec,
	}
	u, err := toUnstructured(rt)
	if err != nil {
		return err
	}
	_, err = a.k.Dynamic.Resource(LBRouteResource).Namespace(svc.Namespace).Create(ctx, u, metav1.CreateOptions{FieldManager: "edgeagent-auto-lbroute"})
	if apierrors.IsAlreadyExists(err) {
		return nil // the cache will bring it, and the next pass will look again
	}
	if err != nil {
		return fmt.Errorf("create LBRoute %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	a.log.Info("created LBRoute", "lbroute", svc.Namespace+"/"+svc.Name, "vip", spec.VSIP)
	return nil
}

func (a *AutoLBRoute) update(ctx context.Context, cur *v1alpha1.LBRoute, spec v1alpha1.LBRouteSpec) error {
	rt := cur.DeepCopy()
	rt.APIVersion, rt.Kind = v1alpha1.GroupVersion.String(), "LBRoute"
	rt.Spec = spec
	rt.Status = v1alpha1.LBRouteStatus{}
	u, err := toUnstructured(rt)
	if err != nil {
		return err
	}
	unstructured.RemoveNestedField(u.Object, "status")
	_, err = a.k.Dynamic.Resource(LBRouteResource).Namespace(rt.Namespace).Update(ctx, u, metav1.UpdateOptions{FieldManager: "edgeagent-auto-lbroute"})
	if err != nil {
		return fmt.Errorf("update LBRoute %s/%s: %w", rt.Namespace, rt.Name, err)
	}
	a.log.Info("updated LBRoute", "lbroute", rt.Namespace+"/"+rt.Name, "vip", spec.VSIP)
	return nil
}

// remove deletes an auto-created route and takes its VIP off the Service.
func (a *AutoLBRoute) remove(ctx context.Context, svc *corev1.Service, rt *v1alpha1.LBRoute) error {
	err := a.k.Dynamic.Resource(LBRouteResource).Namespace(rt.Namespace).Delete(ctx, rt.Name,
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rt.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete LBRoute %s/%s: %w", rt.Namespace, rt.Name, err)
	}
	a.log.Info("deleted auto-created LBRoute", "lbroute", rt.Namespace+"/"+rt.Name)
	a.mu.Lock()
	for ip, owner := range a.pending {
		if owner == rt.Namespace+"/"+rt.Name {
			delete(a.pending, ip)
		}
	}
	a.mu.Unlock()
	if svc != nil && svc.DeletionTimestamp == nil && ownedBy(rt, svc) {
		return a.setIngress(ctx, svc, "")
	}
	return nil
}

// setIngress makes status.loadBalancer.ingress hold exactly the VIP (or
// nothing when vip is "").
func (a *AutoLBRoute) setIngress(ctx context.Context, svc *corev1.Service, vip string) error {
	var want []corev1.LoadBalancerIngress
	if vip != "" {
		want = []corev1.LoadBalancerIngress{{IP: vip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	}
	if equality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, want) {
		return nil
	}
	cp := svc.DeepCopy()
	cp.Status.LoadBalancer.Ingress = want
	_, err := a.k.Client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: "edgeagent-auto-lbroute"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("set ingress of Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}

// AutoRouteKeys lists the auto-created routes in the cache (for tests and
// status).
func (a *AutoLBRoute) AutoRouteKeys() []string {
	var out []string
	for _, obj := range a.k.Routes().GetStore().List() {
		if rt, ok := obj.(*v1alpha1.LBRoute); ok && rt.Labels[AutoRouteLabel] == "true" {
			out = append(out, rt.Namespace+"/"+rt.Name)
		}
	}
	slices.Sort(out)
	return out
}
