package daemonset_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/poll"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The shipped FlowSchemas put the agents' requests at their own priority
// level, and their Lease renewals at leader-election: the apiserver says
// which it used in every response (X-Kubernetes-PF-PriorityLevel-UID).
func TestFlowControlClassifiesTheAgents(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{CRDDir: "-"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := s.Kubectl(ctx, "apply", "--server-side", "-k", base()); err != nil {
		t.Fatalf("apply: %v", err)
	}
	admin := kubernetes.NewForConfigOrDie(s.Config())
	level := func(name string) string {
		pl, err := admin.FlowcontrolV1().PriorityLevelConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("priority level %s: %v", name, err)
		}
		return string(pl.UID)
	}
	agent := s.Impersonating("edgeagent-system", "edgeagent")
	rt, err := rest.TransportFor(agent)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: rt}
	classified := func(path string) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			return "" // a just-created CRD or priority level: asked to retry
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s as the agent: %s", path, resp.Status)
		}
		return resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedPriorityLevelConfigurationUID)
	}
	// The FlowSchemas take a moment to be picked up.
	own, le := level("edgeagent"), level("leader-election")
	poll.Every(200*time.Millisecond).Until(t, 30*time.Second, "the agent's requests classified by the FlowSchemas", func() (bool, string) {
		got := classified("/apis/apv.arraynetworks.com/v1alpha1/lbroutes")
		lease := classified("/apis/coordination.k8s.io/v1/namespaces/edgeagent-system/leases/edgeagent-leader")
		return got == own && lease == le, fmt.Sprintf("agent requests at priority level %q (want edgeagent %q), Lease at %q (want leader-election %q)", got, own, lease, le)
	})
}
