package healthcheck

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"sigs.k8s.io/yaml"
)

// TestServiceFormReadinessFirst translates a service-form LBRoute and runs
// the prober on it against loopback servers: Kubernetes readiness decides
// who is a candidate, probes only take more reals out.
func TestServiceFormReadinessFirst(t *testing.T) {
	t.Parallel()
	ready := startHTTP(t, "127.0.0.1:0", 200)
	notReady := startHTTP(t, "127.0.0.1:0", 200)
	terminating := startHTTP(t, "127.0.0.1:0", 200)
	dead := closedPort(t)

	var rt v1alpha1.LBRoute
	if err := yaml.UnmarshalStrict([]byte(`
metadata: {name: api, namespace: shop}
spec:
  vsIP: 10.201.0.20
  ports: [{port: 80, targetPort: http}]
  service: {name: api}
  healthCheck: {type: TCP, intervalSeconds: 1, timeoutSeconds: 1, riseCount: 1, fallCount: 1}
`), &rt); err != nil {
		t.Fatal(err)
	}
	ep := func(a netip.AddrPort, ready, serving, terminating bool) model.Endpoint {
		return model.Endpoint{IP: a.Addr(), Ready: ready, Serving: serving, Terminating: terminating,
			Ports: map[string]int32{"http": int32(a.Port())}}
	}
	lookup := func(ns, name string) (model.ServiceEndpoints, bool) {
		return model.ServiceEndpoints{
			Ports: []model.ServicePort{{Name: "http", Port: 80}},
			Endpoints: []model.Endpoint{
				ep(ready.addr, true, true, false),
				ep(notReady.addr, false, false, false),
				ep(terminating.addr, false, true, true),
				ep(dead, true, true, false),
			},
		}, ns == "shop" && name == "api"
	}
	s, results := translate.Build([]*v1alpha1.LBRoute{&rt}, translate.Options{
		Pools:     []model.Pool{{CIDR: netip.MustParsePrefix("10.201.0.0/24")}},
		Endpoints: lookup,
	})
	if len(s.Services) != 1 || !results[0].Accepted {
		t.Fatalf("translation: %+v %+v", s, results)
	}

	p := New(Options{Logger: quiet})
	p.Apply(s)
	runProber(t, p)
	key := s.Services[0].Key()
	poll.Until(t, 3*time.Second, "the dead endpoint probed down", func() (bool, string) {
		reals := p.Apply(s).Services[0].Reals
		for _, r := range reals {
			if r.Endpoint() == dead {
				return !r.Healthy, fmt.Sprintf("%+v", r)
			}
		}
		return false, fmt.Sprintf("%s not among the reals %+v", dead, reals)
	})
	got := map[netip.AddrPort]model.Real{}
	for _, r := range p.Apply(s).Services[0].Reals {
		got[r.Endpoint()] = r
	}
	if _, ok := got[notReady.addr]; ok {
		t.Error("a not-ready endpoint is a real: readiness must come first")
	}
	if r := got[ready.addr]; !r.Eligible() {
		t.Errorf("ready and passing endpoint %+v not eligible", r)
	}
	if r := got[terminating.addr]; !r.Healthy || r.Eligible() {
		t.Errorf("terminating endpoint %+v: want probed healthy but not eligible (drained)", r)
	}
	if r := got[dead]; r.Healthy || r.Eligible() {
		t.Errorf("ready endpoint failing its probe %+v: want unhealthy", r)
	}
	if res, _ := p.RealStatus(key, got[dead]); res != "connect: connection refused" {
		t.Errorf("dead endpoint last result %q", res)
	}
	if notReady.conns.Load() != 0 {
		t.Errorf("the not-ready endpoint was probed %d times", notReady.conns.Load())
	}
}
