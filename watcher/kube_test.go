package watcher

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/poll"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

func TestMain(m *testing.M) {
	if os.Getenv("EDGEAGENT_FAULT_HELPER") == "1" {
		os.Exit(faultHelperMain())
	}
	code := m.Run()
	apiservertest.StopShared()
	os.Exit(code)
}

// env is a shared apiserver with the deploy/daemonset kustomization applied
// for real, an admin client for the test's own setup, and the agent's
// config: impersonating the edgeagent ServiceAccount, so every test runs
// the agent with exactly the RBAC the manifests grant.
type env struct {
	s     *apiservertest.Server
	admin kubernetes.Interface
	dyn   dynamic.Interface
	agent *rest.Config
}

var (
	deployOnce sync.Once
	deployErr  error
	nsSeq      atomic.Int32
)

func setup(t *testing.T) *env {
	t.Helper()
	s := apiservertest.Shared(t)
	deployOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, deployErr = s.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(apiservertest.RepoRoot(), "deploy", "daemonset"))
	})
	if deployErr != nil {
		t.Fatalf("apply deploy/daemonset: %v", deployErr)
	}
	e := &env{s: s, agent: s.Impersonating("edgeagent-system", "edgeagent")}
	e.admin = kubernetes.NewForConfigOrDie(s.Config())
	e.dyn = dynamic.NewForConfigOrDie(s.Config())
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", os.Getpid()%100000, nsSeq.Add(1))
	_, err := e.admin.CoreV1().Namespaces().Create(ctxT(t), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// startKube runs a Kubernetes source as the agent until the test ends.
func (e *env) startKube(t *testing.T, opts KubeOptions) (*Kube, *atomic.Int64) {
	t.Helper()
	if opts.Config == nil {
		opts.Config = e.agent
	}
	k, err := NewKube(opts)
	if err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := k.Run(ctx, func() { changes.Add(1) }); err != nil {
			t.Errorf("source: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 30*time.Second, func() error {
		if !k.Synced() {
			return fmt.Errorf("not synced")
		}
		return nil
	})
	return k, &changes
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	poll.Every(50*time.Millisecond).Until(t, d, "the condition", poll.NoError(f))
}

func (e *env) createRoute(t *testing.T, rt *v1alpha1.LBRoute) *v1alpha1.LBRoute {
	t.Helper()
	rt.APIVersion, rt.Kind = v1alpha1.GroupVersion.String(), "LBRoute"
	u, err := toUnstructured(rt)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.dyn.Resource(LBRouteResource).Namespace(rt.Namespace).Create(ctxT(t), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create LBRoute %s/%s: %v", rt.Namespace, rt.Name, err)
	}
	return fromUnstructured(t, out)
}

func (e *env) getRoute(t *testing.T, ns, name string) *v1alpha1.LBRoute {
	t.Helper()
	u, err := e.dyn.Resource(LBRouteResource).Namespace(ns).Get(ctxT(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get LBRoute %s/%s: %v", ns, name, err)
	}
	return fromUnstructured(t, u)
}

func (e *env) updateRoute(t *testing.T, ns, name string, mutate func(*v1alpha1.LBRoute)) {
	t.Helper()
	rt := e.getRoute(t, ns, name)
	mutate(rt)
	rt.APIVersion, rt.Kind = v1alpha1.GroupVersion.String(), "LBRoute"
	u, err := toUnstructured(rt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.dyn.Resource(LBRouteResource).Namespace(ns).Update(ctxT(t), u, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update LBRoute %s/%s: %v", ns, name, err)
	}
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured) *v1alpha1.LBRoute {
	t.Helper()
	var rt v1alpha1.LBRoute
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &rt); err != nil {
		t.Fatal(err)
	}
	return &rt
}

func staticRoute(ns, name, vip string, reals ...string) *v1alpha1.LBRoute {
	rt := &v1alpha1.LBRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.LBRouteSpec{
			VSIP:  vip,
			Ports: []v1alpha1.LBRoutePort{{Port: 80, Protocol: "TCP", TargetPort: ptr.To(intstr.FromInt32(8080))}},
		},
	}
	for _, r := range reals {
		rt.Spec.RealServers = append(rt.Spec.RealServers, v1alpha1.RealServer{IP: r})
	}
	return rt
}

func serviceRoute(ns, name, vip, svc string) *v1alpha1.LBRoute {
	return &v1alpha1.LBRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.LBRouteSpec{
			VSIP:    vip,
			Ports:   []v1alpha1.LBRoutePort{{Port: 80, Protocol: "TCP"}},
			Service: &v1alpha1.ServiceRef{Name: svc},
		},
	}
}

func (e *env) createService(t *testing.T, ns, name string, typ corev1.ServiceType, mutate ...func(*corev1.Service)) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if typ == corev1.ServiceTypeLoadBalancer {
		svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
	}
	for _, m := range mutate {
		m(svc)
	}
	out, err := e.admin.CoreV1().Services(ns).Create(ctxT(t), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service: %v", err)
	}
	return out
}

type ep struct {
	ip                          string
	ready, serving, terminating bool
}

func (e *env) putSlice(t *testing.T, ns, svc string, eps ...ep) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: svc + "-x", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, p := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{p.ip},
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptr.To(p.ready), Serving: ptr.To(p.serving), Terminating: ptr.To(p.terminating),
			},
		})
	}
	c := e.admin.DiscoveryV1().EndpointSlices(ns)
	cur, err := c.Get(ctxT(t), es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = c.Update(ctxT(t), es, metav1.UpdateOptions{})
	} else {
		_, err = c.Create(ctxT(t), es, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("put EndpointSlice: %v", err)
	}
}

var testPools = []model.Pool{{CIDR: netip.MustParsePrefix("10.200.0.0/16")}}

// stateOf translates the source's snapshot, as the agent does.
func stateOf(k *Kube, pools []model.Pool) (model.State, []translate.Result) {
	s := k.Snapshot()
	return translate.Build(s.Routes, translate.Options{Pools: pools, Endpoints: s.Endpoints})
}

// servicesOf returns the virtual services of one route, keyed by port.
func servicesOf(st model.State, ns, route string) []model.VirtualService {
	var out []model.VirtualService
	for _, vs := range st.Services {
		if vs.Namespace == ns && vs.Route == route {
			out = append(out, vs)
		}
	}
	return out
}

func realsString(vs model.VirtualService) string {
	s := ""
	for _, r := range vs.Reals {
		s += r.Endpoint().String()
		if r.Terminating {
			s += "(terminating)"
		}
		s += " "
	}
	return s
}

func TestSourceRoutesBothFormsAndEndpointSlices(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t, nil)
	e.createService(t, ns, "web", corev1.ServiceTypeClusterIP)
	e.putSlice(t, ns, "web", ep{"10.244.1.10", true, true, false}, ep{"10.244.2.10", true, true, false})
	e.createRoute(t, staticRoute(ns, "static", "10.200.0.10", "10.244.9.1", "10.244.9.2"))
	e.createRoute(t, serviceRoute(ns, "bysvc", "10.200.0.11", "web"))

	k, changes := e.startKube(t, KubeOptions{NodeName: "edge-1"})

	check := func(route, want string) func() error {
		return func() error {
			st, _ := stateOf(k, testPools)
			vss := servicesOf(st, ns, route)
			if want == "" {
				if len(vss) != 0 {
					return fmt.Errorf("%s still present: %v", route, vss)
				}
				return nil
			}
			if len(vss) != 1 {
				return fmt.Errorf("%s: %d virtual services", route, len(vss))
			}
			got := vss[0].VIP.String() + " " + realsString(vss[0])
			if got != want {
				return fmt.Errorf("%s: got %q, want %q", route, got, want)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, check("static", "10.200.0.10 10.244.9.1:8080 10.244.9.2:8080 "))
	eventually(t, 10*time.Second, check("bysvc", "10.200.0.11 10.244.1.10:8080 10.244.2.10:8080 "))
	var all, order []string
	for _, rt := range k.Snapshot().Routes {
		all = append(all, rt.Namespace+"/"+rt.Name)
		if rt.Namespace == ns { // other tests' routes share the apiserver
			order = append(order, rt.Namespace+"/"+rt.Name)
		}
	}
	if want := []string{ns + "/bysvc", ns + "/static"}; !slices.IsSorted(all) || !slices.Equal(order, want) {
		t.Errorf("snapshot routes %v, want them sorted by namespace/name, with %v", all, want)
	}

	// EndpointSlice changes: one endpoint starts terminating (still serving:
	// drained, not cut), a new one is not ready yet (not used).
	before := changes.Load()
	e.putSlice(t, ns, "web",
		ep{"10.244.1.10", true, true, false},
		ep{"10.244.2.10", false, true, true},
		ep{"10.244.3.10", false, false, false})
	eventually(t, 10*time.Second, check("bysvc", "10.200.0.11 10.244.1.10:8080 10.244.2.10:8080(terminating) "))
	if changes.Load() == before {
		t.Error("EndpointSlice change did not notify the agent")
	}
	e.putSlice(t, ns, "web", ep{"10.244.3.10", true, true, false})
	eventually(t, 10*time.Second, check("bysvc", "10.200.0.11 10.244.3.10:8080 "))

	// Update and delete.
	e.updateRoute(t, ns, "static", func(rt *v1alpha1.LBRoute) { rt.Spec.VSIP = "10.200.0.12" })
	eventually(t, 10*time.Second, check("static", "10.200.0.12 10.244.9.1:8080 10.244.9.2:8080 "))
	if err := e.dyn.Resource(LBRouteResource).Namespace(ns).Delete(ctxT(t), "static", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, check("static", ""))

	// A status-only write does not wake the agent.
	time.Sleep(200 * time.Millisecond)
	before = changes.Load()
	rt := e.getRoute(t, ns, "bysvc")
	rt.Status.VSName = "x"
	u, _ := toUnstructured(rt)
	if _, err := e.dyn.Resource(LBRouteResource).Namespace(ns).UpdateStatus(ctxT(t), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := changes.Load() - before; n != 0 {
		t.Errorf("status-only update notified the agent %d times", n)
	}
}

func TestSourceNodePeers(t *testing.T) {
	e := setup(t)
	tag := fmt.Sprintf("np%d", os.Getpid()%100000)
	mk := func(name string, labels, ann map[string]string) {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann}}
		if _, err := e.admin.CoreV1().Nodes().Create(ctxT(t), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.admin.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	sel := map[string]string{"peer-test": tag}
	mk(tag+"-calico1", sel, map[string]string{CalicoIPv4Annotation: "10.99.0.11/24", CalicoIPv6Annotation: "fd00::11/64"})
	mk(tag+"-calico2", sel, map[string]string{CalicoIPv4Annotation: "10.99.0.12/24"})
	mk(tag+"-edge", sel, map[string]string{CalicoIPv4Annotation: "10.99.0.1/24"}) // the agent's own node
	mk(tag+"-other", nil, map[string]string{CalicoIPv4Annotation: "10.99.0.99/24"})

	k, _ := e.startKube(t, KubeOptions{NodeName: tag + "-edge", NodePeerSelector: "peer-test=" + tag})
	eventually(t, 10*time.Second, func() error {
		got := fmt.Sprint(k.Snapshot().NodePeers)
		want := fmt.Sprintf("[{%[1]s-calico1 10.99.0.11} {%[1]s-calico1 fd00::11} {%[1]s-calico2 10.99.0.12}]", tag)
		if got != want {
			return fmt.Errorf("peers %s, want %s", got, want)
		}
		return nil
	})
}

func (e *env) events(t *testing.T, ns, name string) []string {
	t.Helper()
	list, err := e.admin.CoreV1().Events(ns).List(ctxT(t), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		out = append(out, ev.Type+"/"+ev.Reason)
	}
	return out
}
