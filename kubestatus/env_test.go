package kubestatus

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/lbrgen"
	"github.com/arraynetworks/edgeagent/internal/poll"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
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
	code := m.Run()
	apiservertest.StopShared()
	os.Exit(code)
}

// env is a shared apiserver with the deploy/daemonset kustomization
// applied, an admin client for the tests' own setup, and the agents'
// config: impersonating the edgeagent ServiceAccount, so the writer runs
// with exactly the RBAC the manifests grant.
type env struct {
	s     *apiservertest.Server
	admin kubernetes.Interface
	dyn   dynamic.Interface
	agent *rest.Config
}

var (
	deployOnce sync.Once
	deployErr  error
	seq        atomic.Int32
)

var testPools = []model.Pool{{CIDR: netip.MustParsePrefix("10.200.0.0/16")}}

var reportResource = v1alpha1.GroupVersion.WithResource("lbroutereports")

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

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	poll.Until(t, d, "the condition", poll.NoError(f))
}

func (e *env) namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("ks%d-%d", os.Getpid()%100000, seq.Add(1))
	if _, err := e.admin.CoreV1().Namespaces().Create(ctxT(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// node makes a Node (as the kubelet would) named uniquely for the test and
// removes it, and every report of it, when the test ends: the shared
// apiserver's next test must not count it.
func (e *env) node(t *testing.T, tag string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d", tag, os.Getpid()%100000, seq.Add(1))
	if err := lbrgen.CreateNodes(ctxT(t), e.admin, []string{name}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.admin.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
		_ = e.dyn.Resource(reportResource).DeleteCollection(ctx, metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: NodeLabel + "=" + NodeLabelValue(name)})
	})
	return name
}

func (e *env) createRoute(t *testing.T, rt *v1alpha1.LBRoute) {
	t.Helper()
	rt.APIVersion, rt.Kind = v1alpha1.GroupVersion.String(), "LBRoute"
	u, err := lbrgen.ToUnstructured(rt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.dyn.Resource(lbrgen.LBRouteResource).Namespace(rt.Namespace).Create(ctxT(t), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create LBRoute %s/%s: %v", rt.Namespace, rt.Name, err)
	}
}

func (e *env) getRoute(t *testing.T, ns, name string) *v1alpha1.LBRoute {
	t.Helper()
	u, err := e.dyn.Resource(lbrgen.LBRouteResource).Namespace(ns).Get(ctxT(t), name, metav1.GetOptions{})
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
	u, err := lbrgen.ToUnstructured(rt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.dyn.Resource(lbrgen.LBRouteResource).Namespace(ns).Update(ctxT(t), u, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update LBRoute %s/%s: %v", ns, name, err)
	}
}

func (e *env) reports(t *testing.T, node string) []v1alpha1.LBRouteReport {
	t.Helper()
	l, err := e.dyn.Resource(reportResource).List(ctxT(t), metav1.ListOptions{LabelSelector: NodeLabel + "=" + NodeLabelValue(node)})
	if err != nil {
		t.Fatal(err)
	}
	var out []v1alpha1.LBRouteReport
	for _, u := range l.Items {
		var r v1alpha1.LBRouteReport
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
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

func condition(rt *v1alpha1.LBRoute, typ string) string {
	c := meta.FindStatusCondition(rt.Status.Conditions, typ)
	if c == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s/%s", c.Status, c.Reason)
}

func msg(rt *v1alpha1.LBRoute, typ string) string {
	c := meta.FindStatusCondition(rt.Status.Conditions, typ)
	if c == nil {
		return "<none>"
	}
	return c.Message
}

// agentT is one simulated agent: the real Kubernetes source and status
// writer, fed verdicts by the test instead of a dataplane.
type agentT struct {
	node   string
	k      *watcher.Kube
	w      *Writer
	cancel func()
	done   chan struct{}
	leadC  func()
}

func (e *env) startAgent(t *testing.T, node string, leader bool, opts Options) *agentT {
	t.Helper()
	k, err := watcher.NewKube(watcher.KubeOptions{Config: e.agent, NodeName: node})
	if err != nil {
		t.Fatal(err)
	}
	opts.NodeName = node
	if opts.StartupHold == 0 {
		opts.StartupHold = 3 * time.Second
	}
	opts.Registerer = prometheus.NewRegistry()
	if os.Getenv("KUBESTATUS_DEBUG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", node)
	}
	w, err := New(k, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agentT{node: node, k: k, w: w, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { _ = k.Run(ctx, nil) })
	wg.Go(func() { _ = w.Run(ctx) })
	if leader {
		lctx, lcancel := context.WithCancel(ctx)
		a.leadC = lcancel
		wg.Go(func() { _ = w.Lead(lctx) })
	}
	go func() { wg.Wait(); close(a.done) }()
	t.Cleanup(a.stop)
	eventually(t, 30*time.Second, func() error {
		if !k.Synced() {
			return fmt.Errorf("not synced")
		}
		return nil
	})
	return a
}

func (a *agentT) stop() {
	a.cancel()
	<-a.done
}

// report translates the snapshot like the agent and reports every route
// of namespace ns, with programmed/advertised/healthy as given per route
// name (default: programmed, advertised, all reals healthy).
func (a *agentT) report(ns string, override map[string]RouteReport) {
	s := a.k.Snapshot()
	_, results := translate.Build(s.Routes, translate.Options{Pools: testPools, Endpoints: s.Endpoints})
	reports := make([]RouteReport, 0, len(results))
	for _, r := range results {
		if r.Namespace != ns {
			continue // other tests' routes: the shared apiserver holds them too
		}
		rep := RouteReport{Result: r}
		if r.Accepted && len(r.Services) > 0 {
			rep.Programmed, rep.Advertised = true, a.w.opts.Advertises
			if len(r.Services) > 0 {
				rep.Reals = len(r.Services[0].Reals)
				rep.HealthyReals = rep.Reals
			}
		}
		if o, ok := override[r.Name]; ok {
			o.Result = r
			rep = o
		}
		reports = append(reports, rep)
	}
	a.w.ReportRoutes(context.Background(), reports)
}

func routesIn(k *watcher.Kube, ns string) int {
	n := 0
	for _, rt := range k.Snapshot().Routes {
		if rt.Namespace == ns {
			n++
		}
	}
	return n
}

func (a *agentT) waitRoutes(t *testing.T, ns string, n int) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		if got := routesIn(a.k, ns); got != n {
			return fmt.Errorf("%s sees %d routes, want %d", a.node, got, n)
		}
		return nil
	})
}

// settle waits until the writer's count stops moving for a second and
// returns it.
func settle(t *testing.T, w *Writer, atLeast int64) int64 {
	t.Helper()
	var last int64 = -1
	stable := time.Now()
	// Gives up when the writes stop short of atLeast for 60 s, not after a
	// fixed time: on a loaded machine (benchmarks beside the suite) the
	// apiserver takes a few writes a second, and that is still progress.
	stalled := false
	poll.Every(100*time.Millisecond).Until(t, 5*time.Minute, "status writes to settle", func() (bool, string) {
		cur := w.Writes()
		if cur != last {
			last, stable = cur, time.Now()
		}
		if cur < atLeast && time.Since(stable) >= 60*time.Second {
			stalled = true
			return true, ""
		}
		return cur >= atLeast && time.Since(stable) > 1500*time.Millisecond, fmt.Sprintf("%d writes (want >= %d)", cur, atLeast)
	})
	if stalled {
		t.Fatalf("writes did not settle: %d (want >= %d), none for 60 s", last, atLeast)
	}
	return last
}
