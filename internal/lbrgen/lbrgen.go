// Package lbrgen creates LBRoutes in bulk for scale benchmarks and tests:
// N routes spread over a few namespaces, each with static reals or (service
// form) a headless Service and an EndpointSlice of its own, and the Node
// objects edge agents run on. It talks to the apiserver with client-go,
// many requests in flight, so that creating 10,000 routes takes seconds,
// not the minutes a kubectl loop would.
package lbrgen

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// LBRouteResource is the LBRoute resource.
var LBRouteResource = v1alpha1.GroupVersion.WithResource("lbroutes")

// Options say what to create.
type Options struct {
	// Routes is the number of LBRoutes; they are named r00000, r00001, ...
	Routes int
	// Namespaces spreads them over this many namespaces named
	// <Prefix>0, <Prefix>1, ... (default 10).
	Namespaces int
	Prefix     string // default "bench-"
	// Reals per route (default 4).
	Reals int
	// ServiceForm gives each route a headless Service and one EndpointSlice
	// with its reals as ready endpoints instead of static realServers.
	ServiceForm bool
	// HealthCheck is the routes' check type: "None" (default: nothing to
	// probe, every real counts as healthy) or "TCP".
	HealthCheck string
	// Workers is the number of requests in flight (default 16).
	Workers int
}

func (o *Options) defaults() {
	if o.Namespaces <= 0 {
		o.Namespaces = 10
	}
	if o.Prefix == "" {
		o.Prefix = "bench-"
	}
	if o.Reals <= 0 {
		o.Reals = 4
	}
	if o.HealthCheck == "" {
		o.HealthCheck = "None"
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
}

// VIP is the virtual IP of route i: 10.200.0.0/16 in order (so a vipPool
// of 10.200.0.0/16 admits 65,534 routes).
func VIP(i int) netip.Addr {
	n := i + 1
	return netip.AddrFrom4([4]byte{10, 200, byte(n >> 8), byte(n)})
}

// Namespace is the namespace of route i.
func (o Options) Namespace(i int) string {
	o.defaults()
	return fmt.Sprintf("%s%d", o.Prefix, i%o.Namespaces)
}

// Name is the name of route i.
func Name(i int) string { return fmt.Sprintf("r%05d", i) }

func realIP(i, j int) string {
	n := (i*7 + j) % 60000
	return netip.AddrFrom4([4]byte{10, 244, byte(n / 250), byte(1 + n%250)}).String()
}

// Route is route i as the generator creates it.
func (o Options) Route(i int) *v1alpha1.LBRoute {
	o.defaults()
	rt := &v1alpha1.LBRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "LBRoute"},
		ObjectMeta: metav1.ObjectMeta{Name: Name(i), Namespace: o.Namespace(i)},
		Spec: v1alpha1.LBRouteSpec{
			VSIP:        VIP(i).String(),
			Ports:       []v1alpha1.LBRoutePort{{Port: 80, Protocol: "TCP", TargetPort: ptr.To(intstr.FromInt32(8080))}},
			HealthCheck: &v1alpha1.HealthCheck{Type: v1alpha1.HealthCheckType(o.HealthCheck)},
		},
	}
	if o.ServiceForm {
		rt.Spec.Service = &v1alpha1.ServiceRef{Name: Name(i)}
		return rt
	}
	for j := range o.Reals {
		rt.Spec.RealServers = append(rt.Spec.RealServers, v1alpha1.RealServer{IP: realIP(i, j)})
	}
	return rt
}

func (o Options) service(i int) (*corev1.Service, *discoveryv1.EndpointSlice) {
	ns, name := o.Namespace(i), Name(i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			// Headless: the test apiserver's service range is a /24.
			ClusterIP: corev1.ClusterIPNone,
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-a", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "lbrgen"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j := range o.Reals {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{realIP(i, j)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	return svc, es
}

// Clients are what Create needs.
type Clients struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
}

// Create makes the namespaces, then every route (and its Service and
// EndpointSlice), with Workers requests in flight. Objects that exist
// already are left as they are, so Create can be re-run. progress, if not
// nil, is called after every route.
func Create(ctx context.Context, c Clients, o Options, progress func(done int)) error {
	o.defaults()
	for n := range min(o.Namespaces, max(o.Routes, 1)) {
		_, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d", o.Prefix, n)},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace: %w", err)
		}
	}
	return parallel(ctx, o.Routes, o.Workers, progress, func(ctx context.Context, i int) error {
		if o.ServiceForm {
			svc, es := o.service(i)
			if _, err := c.Kube.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); ignoreExists(err) != nil {
				return fmt.Errorf("create service %s/%s: %w", svc.Namespace, svc.Name, err)
			}
			if _, err := c.Kube.DiscoveryV1().EndpointSlices(es.Namespace).Create(ctx, es, metav1.CreateOptions{}); ignoreExists(err) != nil {
				return fmt.Errorf("create endpointslice %s/%s: %w", es.Namespace, es.Name, err)
			}
		}
		rt := o.Route(i)
		u, err := ToUnstructured(rt)
		if err != nil {
			return err
		}
		if _, err := c.Dynamic.Resource(LBRouteResource).Namespace(rt.Namespace).Create(ctx, u, metav1.CreateOptions{}); ignoreExists(err) != nil {
			return fmt.Errorf("create lbroute %s/%s: %w", rt.Namespace, rt.Name, err)
		}
		return nil
	})
}

// CreateNodes makes a Node object per name (what the kubelet would
// register), so that agents find their Node and what refers to a Node can
// be garbage-collected with it.
func CreateNodes(ctx context.Context, c kubernetes.Interface, names []string) error {
	return parallel(ctx, len(names), 8, nil, func(ctx context.Context, i int) error {
		_, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: names[i], Labels: map[string]string{"edgeagent.arraynetworks.com/edge": "true"}},
		}, metav1.CreateOptions{})
		if ignoreExists(err) != nil {
			return fmt.Errorf("create node %s: %w", names[i], err)
		}
		return nil
	})
}

// ToUnstructured converts a typed object for the dynamic client.
func ToUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// parallel runs f(0..n-1) on workers goroutines; the first error stops it.
func parallel(ctx context.Context, n, workers int, progress func(int), f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, max(n, 1)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
				d := done.Add(1)
				if progress != nil {
					progress(int(d))
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}
