package apiservertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

// The harness starts a working apiserver with the CRDs installed, and
// kubectl can apply the deploy/daemonset kustomization against it.
func TestStartInstallsCRDs(t *testing.T) {
	s := Start(t, Options{})
	cs, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if !strings.HasPrefix(v.GitVersion, "v1.") {
		t.Fatalf("unexpected version %q", v.GitVersion)
	}
	out, err := s.Kubectl(ctx, "get", "crd", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lbroutes.apv.arraynetworks.com", "edgenodestatuses.apv.arraynetworks.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("CRD %s not installed; have:\n%s", want, out)
		}
	}
}
