// Package daemonset_test checks the kustomize base against a real
// kube-apiserver (internal/apiservertest).
package daemonset_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func base() string { return filepath.Join(apiservertest.RepoRoot(), "deploy", "daemonset") }

// `kubectl apply --dry-run=server -k` validates every object against the
// apiserver, CRDs included. A server-side dry run cannot create the
// namespace for the objects that follow it, so (as on a real cluster) the
// namespace is created first; the real apply on an empty cluster is then
// checked too.
func TestKustomizeServerDryRunAndApply(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{CRDDir: "-"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := s.Kubectl(ctx, "create", "namespace", "edgeagent-system"); err != nil {
		t.Fatal(err)
	}
	out, err := s.Kubectl(ctx, "apply", "--dry-run=server", "-k", base())
	if err != nil {
		t.Fatalf("server dry run: %v", err)
	}
	for _, want := range []string{"daemonset.apps/edgeagent", "customresourcedefinition.apiextensions.k8s.io/lbroutes.apv.arraynetworks.com",
		"clusterrole.rbac.authorization.k8s.io/edgeagent", "configmap/edgeagent-config", "role.rbac.authorization.k8s.io/edgeagent-leader-election"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %s:\n%s", want, out)
		}
	}
	if _, err := s.Kubectl(ctx, "apply", "--server-side", "-k", base()); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if _, err := s.Kubectl(ctx, "-n", "edgeagent-system", "get", "daemonset/edgeagent", "serviceaccount/edgeagent"); err != nil {
		t.Fatal(err)
	}
}

// The DaemonSet keeps the properties the design asks for.
func TestDaemonSetShape(t *testing.T) {
	apiservertest.RequireBinaries(t) // kubectl
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &apiservertest.Server{}
	out, err := s.Kubectl(ctx, "kustomize", base())
	if err != nil {
		t.Fatal(err)
	}
	var ds *appsv1.DaemonSet
	for _, doc := range strings.Split(out, "\n---\n") {
		if strings.Contains(doc, "kind: DaemonSet") {
			ds = &appsv1.DaemonSet{}
			if err := yaml.Unmarshal([]byte(doc), ds); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet in the base")
	}
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	sc := c.SecurityContext
	if !spec.HostNetwork {
		t.Error("hostNetwork is off")
	}
	if sc == nil || (sc.Privileged != nil && *sc.Privileged) {
		t.Error("container is privileged")
	}
	for _, cp := range []corev1.Capability{"NET_ADMIN", "NET_RAW"} {
		if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Add, cp) {
			t.Errorf("capability %s not added", cp)
		}
	}
	if len(spec.NodeSelector) == 0 {
		t.Error("no node selector for the edge nodes")
	}
	tolerated := false
	for _, tol := range spec.Tolerations {
		tolerated = tolerated || tol.Effect == corev1.TaintEffectNoSchedule
	}
	if !tolerated {
		t.Error("the edge nodes' NoSchedule taint is not tolerated")
	}
	nodeName := false
	for _, e := range c.Env {
		nodeName = nodeName || (e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName")
	}
	if !nodeName {
		t.Error("NODE_NAME is not taken from the downward API")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("probes are not on /healthz and /readyz")
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g <= 0 || *g >= 120 {
		t.Error("termination grace period must be set and shorter than the graceful-restart time (120s)")
	}
	// Only the short init container is privileged: it sets the forwarding
	// sysctls an unprivileged container may not.
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Args[0] != "prepare-node" ||
		spec.InitContainers[0].SecurityContext == nil || spec.InitContainers[0].SecurityContext.Privileged == nil || !*spec.InitContainers[0].SecurityContext.Privileged {
		t.Errorf("init containers %+v, want one privileged prepare-node", spec.InitContainers)
	} else if spec.InitContainers[0].Image != c.Image {
		t.Errorf("init container image %q differs from the agent's %q", spec.InitContainers[0].Image, c.Image)
	}
	apvSecret := false
	for _, v := range spec.Volumes {
		apvSecret = apvSecret || (v.Secret != nil && v.Secret.SecretName == "edgeagent-apv" && v.Secret.Optional != nil && *v.Secret.Optional)
	}
	if !apvSecret {
		t.Error("the APV credentials Secret (edgeagent-apv, optional) is not mounted")
	}
}

// The uninstall DaemonSet is valid against the apiserver and runs
// `edgeagent cleanup --wait` on the edge nodes only.
func TestCleanupServerDryRun(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{CRDDir: "-"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := filepath.Join(filepath.Dir(base()), "cleanup")
	if _, err := s.Kubectl(ctx, "create", "namespace", "edgeagent-system"); err != nil {
		t.Fatal(err)
	}
	out, err := s.Kubectl(ctx, "apply", "--dry-run=server", "-k", dir)
	if err != nil || !strings.Contains(out, "daemonset.apps/edgeagent-cleanup") {
		t.Fatalf("server dry run of deploy/cleanup: %v\n%s", err, out)
	}
	rendered, err := s.Kubectl(ctx, "kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- cleanup\n", "- --wait\n", "edgeagent.arraynetworks.com/edge: \"true\"", "NET_ADMIN"} {
		if !strings.Contains(rendered, want) {
			t.Errorf("deploy/cleanup lacks %q:\n%s", want, rendered)
		}
	}
}
