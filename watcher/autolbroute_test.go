package watcher

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

func TestFirstFree(t *testing.T) {
	used := map[netip.Addr]bool{netip.MustParseAddr("10.0.0.1"): true}
	for _, c := range []struct {
		pfx  string
		used map[netip.Addr]bool
		want string
	}{
		{"10.0.0.0/29", nil, "10.0.0.1"},
		{"10.0.0.0/29", used, "10.0.0.2"},
		{"10.0.0.0/30", map[netip.Addr]bool{netip.MustParseAddr("10.0.0.1"): true, netip.MustParseAddr("10.0.0.2"): true}, "none"}, // .3 is broadcast
		{"10.0.0.7/32", nil, "10.0.0.7"},
		{"10.0.0.6/31", nil, "10.0.0.6"},
		{"fd00::/120", nil, "fd00::1"},
	} {
		got, ok := firstFree(netip.MustParsePrefix(c.pfx), c.used)
		s := "none"
		if ok {
			s = got.String()
		}
		if s != c.want {
			t.Errorf("firstFree(%s) = %s, want %s", c.pfx, s, c.want)
		}
	}
}

// runLeaderAuto runs leader election and, while leading, the auto-LBRoute
// controller, all as the agent's ServiceAccount.
func (e *env) runLeaderAuto(t *testing.T, node string, pools []model.Pool) (*AutoLBRoute, *atomic.Bool) {
	a, leading, _ := e.runLeaderAutoStop(t, node, pools)
	return a, leading
}

func (e *env) runLeaderAutoStop(t *testing.T, node string, pools []model.Pool) (*AutoLBRoute, *atomic.Bool, func()) {
	t.Helper()
	k, _ := e.startKube(t, KubeOptions{NodeName: node})
	a, err := NewAutoLBRoute(k, AutoOptions{Pools: pools, NodeName: node})
	if err != nil {
		t.Fatal(err)
	}
	var leading atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := RunLeaderElection(ctx, LeaderOptions{
			Client: kubernetes.NewForConfigOrDie(e.agent), Namespace: "edgeagent-system", Identity: node,
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond,
		}, func(ctx context.Context) {
			leading.Store(true)
			defer leading.Store(false)
			_ = a.Run(ctx)
		})
		if err != nil {
			t.Errorf("leader election: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return a, &leading, stop
}

// Two agents: one leads; when it stops, the other takes over and carries
// on with the namespace's Services.
func TestAutoLBRouteLeaderFailover(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t, map[string]string{AutoNamespaceLabel: "true"})
	pools := []model.Pool{{CIDR: netip.MustParsePrefix("10.203.0.0/29"), Namespaces: []string{ns}}}
	var leading [2]*atomic.Bool
	var stops [2]func()
	for i := range 2 {
		_, leading[i], stops[i] = e.runLeaderAutoStop(t, fmt.Sprintf("edge-f%d", i), pools)
	}
	eventually(t, 20*time.Second, func() error {
		if leading[0].Load() == leading[1].Load() {
			return fmt.Errorf("leading: %v %v", leading[0].Load(), leading[1].Load())
		}
		return nil
	})
	leader := 0
	if leading[1].Load() {
		leader = 1
	}
	e.createService(t, ns, "one", corev1.ServiceTypeLoadBalancer)
	eventually(t, 10*time.Second, func() error {
		_, err := e.dyn.Resource(LBRouteResource).Namespace(ns).Get(ctxT(t), "one", metav1.GetOptions{})
		return err
	})
	stops[leader]()
	if leading[leader].Load() {
		t.Fatal("stopped agent still leading")
	}
	e.createService(t, ns, "two", corev1.ServiceTypeLoadBalancer)
	eventually(t, 15*time.Second, func() error {
		if !leading[1-leader].Load() {
			return fmt.Errorf("the other agent has not taken over")
		}
		_, err := e.dyn.Resource(LBRouteResource).Namespace(ns).Get(ctxT(t), "two", metav1.GetOptions{})
		return err
	})
}

func TestAutoLBRoute(t *testing.T) {
	e := setup(t)
	ns := e.namespace(t, map[string]string{AutoNamespaceLabel: "true"})
	other := e.namespace(t, map[string]string{AutoNamespaceLabel: "true"})
	pools := []model.Pool{
		{CIDR: netip.MustParsePrefix("10.201.0.0/29"), Namespaces: []string{ns}},
		{CIDR: netip.MustParsePrefix("10.202.0.0/30"), Namespaces: []string{"nobody"}},
	}
	// A hand-written route, and Services of every kind.
	e.createRoute(t, staticRoute(ns, "manual", "10.201.0.6", "10.244.1.1"))
	web := e.createService(t, ns, "web", corev1.ServiceTypeLoadBalancer)
	e.createService(t, ns, "fixed", corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) {
		s.Annotations = map[string]string{VIPAnnotation: "10.201.0.5"}
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstrFrom(53)})
	})
	e.createService(t, ns, "legacy", corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.201.0.4" })
	e.createService(t, ns, "internal", corev1.ServiceTypeClusterIP)
	e.createService(t, ns, "manual", corev1.ServiceTypeLoadBalancer) // clashes with the hand-written route
	e.createService(t, other, "nopool", corev1.ServiceTypeLoadBalancer)

	_, leading := e.runLeaderAuto(t, "edge-auto", pools)
	eventually(t, 20*time.Second, func() error {
		if !leading.Load() {
			return fmt.Errorf("not leading")
		}
		return nil
	})

	routeSpec := func(name string) (string, error) {
		u, err := e.dyn.Resource(LBRouteResource).Namespace(ns).Get(ctxT(t), name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		rt := fromUnstructured(t, u)
		var ps []string
		for _, p := range rt.Spec.Ports {
			ps = append(ps, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
		owner := ""
		for _, o := range rt.OwnerReferences {
			owner = o.Kind + "/" + o.Name
		}
		svc := ""
		if rt.Spec.Service != nil {
			svc = rt.Spec.Service.Name
		}
		return fmt.Sprintf("%s %s svc=%s owner=%s auto=%s", rt.Spec.VSIP, strings.Join(ps, ","), svc, owner, rt.Labels[AutoRouteLabel]), nil
	}
	ingress := func(ns, name string) string {
		s, err := e.admin.CoreV1().Services(ns).Get(ctxT(t), name, metav1.GetOptions{})
		if err != nil {
			return "err: " + err.Error()
		}
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		return strings.Join(ips, ",")
	}
	expect := func(name, want, wantIngress string) func() error {
		return func() error {
			got, err := routeSpec(name)
			if want == "" {
				if !apierrors.IsNotFound(err) {
					return fmt.Errorf("route %s still there: %q %v", name, got, err)
				}
			} else if err != nil || got != want {
				return fmt.Errorf("route %s: %q (%v), want %q", name, got, err, want)
			}
			if ing := ingress(ns, name); ing != wantIngress {
				return fmt.Errorf("Service %s ingress %q, want %q", name, ing, wantIngress)
			}
			return nil
		}
	}
	// The first free address of the namespace's pool (.4 and .5 are asked
	// for by "legacy" and "fixed", .6 is held by "manual").
	eventually(t, 15*time.Second, expect("web", "10.201.0.1 80/TCP svc=web owner=Service/web auto=true", "10.201.0.1"))
	eventually(t, 15*time.Second, expect("fixed", "10.201.0.5 80/TCP,53/UDP svc=fixed owner=Service/fixed auto=true", "10.201.0.5"))
	eventually(t, 15*time.Second, expect("legacy", "10.201.0.4 80/TCP svc=legacy owner=Service/legacy auto=true", "10.201.0.4"))
	eventually(t, 5*time.Second, expect("internal", "", ""))
	// The hand-written route is left alone, with a warning on the Service.
	if got, _ := routeSpec("manual"); got != "10.201.0.6 80/TCP svc= owner= auto=" {
		t.Errorf("hand-written route changed: %q", got)
	}
	eventually(t, 10*time.Second, func() error {
		if evs := e.events(t, ns, "manual"); !slices.Contains(evs, "Warning/LBRouteExists") {
			return fmt.Errorf("events %v", evs)
		}
		return nil
	})
	// No pool admits the other namespace: no route, an event says why.
	eventually(t, 10*time.Second, func() error {
		if evs := e.events(t, other, "nopool"); !slices.Contains(evs, "Warning/AutoLBRouteFailed") {
			return fmt.Errorf("events %v", evs)
		}
		return nil
	})
	if _, err := e.dyn.Resource(LBRouteResource).Namespace(other).Get(ctxT(t), "nopool", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("route created without a VIP: %v", err)
	}

	// Kept in sync with the Service.
	patch := `{"spec":{"ports":[{"name":"http","port":8443,"protocol":"TCP","targetPort":8443}]}}`
	if _, err := e.admin.CoreV1().Services(ns).Patch(ctxT(t), "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, expect("web", "10.201.0.1 8443/TCP svc=web owner=Service/web auto=true", "10.201.0.1"))

	// Deleted with its Service.
	if err := e.admin.CoreV1().Services(ns).Delete(ctxT(t), "fixed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		_, err := routeSpec("fixed")
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("route of a deleted Service still there (%v)", err)
		}
		return nil
	})

	// Label off: auto routes go, hand-written stay, the VIP leaves the Service.
	lbl := `{"metadata":{"labels":{"need-auto-LBRoute":null}}}`
	if _, err := e.admin.CoreV1().Namespaces().Patch(ctxT(t), ns, types.MergePatchType, []byte(lbl), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, expect("web", "", ""))
	if _, err := routeSpec("manual"); err != nil {
		t.Errorf("hand-written route removed with the label: %v", err)
	}
	// And on again.
	lbl = `{"metadata":{"labels":{"need-auto-LBRoute":"true"}}}`
	if _, err := e.admin.CoreV1().Namespaces().Patch(ctxT(t), ns, types.MergePatchType, []byte(lbl), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, expect("web", "10.201.0.1 8443/TCP svc=web owner=Service/web auto=true", "10.201.0.1"))
	_ = web
}

func intstrFrom(n int32) intstr.IntOrString { return intstr.FromInt32(n) }
