package daemonset_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/apiservertest"
)

// The LBRoute CRD itself rejects what can be checked statically (OpenAPI
// and CEL), so `kubectl apply` fails at once with the field named, before
// any agent sees the object.
func TestLBRouteCRDValidation(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := s.Kubectl(ctx, "create", "namespace", "shop"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	apply := func(name, spec string) (string, error) {
		doc := "apiVersion: apv.arraynetworks.com/v1alpha1\nkind: LBRoute\nmetadata: {name: " + name + ", namespace: shop}\nspec:\n" + spec
		f := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return s.Kubectl(ctx, "apply", "-f", f)
	}

	good := "  vsIP: 10.200.0.10\n  ports: [{port: 80, targetPort: 8080}, {port: 80, protocol: UDP}]\n  policy: wrr\n  realServers: [{ip: 10.244.1.10, weight: 3}, {ip: 10.244.2.10}]\n  healthCheck: {type: HTTP, path: /healthz, expectedStatus: 200, intervalSeconds: 5, timeoutSeconds: 2}\n"
	if out, err := apply("good", good); err != nil {
		t.Fatalf("valid LBRoute refused: %v\n%s", err, out)
	}
	out, err := s.Kubectl(ctx, "-n", "shop", "get", "lbr", "good")
	if err != nil {
		t.Fatal(err)
	}
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if want := "NAME VS VIP PORTS GROUP RS POLICY READY AGE"; strings.Join(header, " ") != want {
		t.Fatalf("kubectl get lbr columns %v, want %s", header, want)
	}
	// Defaults from the schema: weight 1, protocol TCP.
	out, err = s.Kubectl(ctx, "-n", "shop", "get", "lbr", "good", "-o", "jsonpath={.spec.realServers[1].weight} {.spec.ports[0].protocol}")
	if err != nil || out != "1 TCP" {
		t.Fatalf("schema defaults: %q %v", out, err)
	}

	cases := []struct{ name, spec, want string }{
		{"vip-not-ip", "  vsIP: 10.200.0.300\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10}]\n", "spec.vsIP: Invalid value: \"10.200.0.300\": must be an IP address"},
		{"no-ports", "  vsIP: 10.200.0.10\n  ports: []\n  realServers: [{ip: 10.244.1.10}]\n", "spec.ports: Invalid value: 0: spec.ports in body should have at least 1 items"},
		{"port-0", "  vsIP: 10.200.0.10\n  ports: [{port: 0}]\n  realServers: [{ip: 10.244.1.10}]\n", "spec.ports[0].port: Invalid value: 0: spec.ports[0].port in body should be greater than or equal to 1"},
		{"port-65536", "  vsIP: 10.200.0.10\n  ports: [{port: 65536}]\n  realServers: [{ip: 10.244.1.10}]\n", "spec.ports[0].port: Invalid value: 65536"},
		{"dup-port", "  vsIP: 10.200.0.10\n  ports: [{port: 80}, {port: 80, protocol: TCP}]\n  realServers: [{ip: 10.244.1.10}]\n", "ports must be unique per protocol"},
		{"bad-protocol", "  vsIP: 10.200.0.10\n  ports: [{port: 80, protocol: SCTP}]\n  realServers: [{ip: 10.244.1.10}]\n", "spec.ports[0].protocol: Unsupported value: \"SCTP\""},
		{"bad-policy", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  policy: lc\n  realServers: [{ip: 10.244.1.10}]\n", "spec.policy: Unsupported value: \"lc\""},
		{"both", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  service: {name: web}\n  realServers: [{ip: 10.244.1.10}]\n", "exactly one of service or realServers must be set"},
		{"neither", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n", "exactly one of service or realServers must be set"},
		{"weight-0", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10, weight: 0}]\n", "spec.realServers[0].weight: Invalid value: 0"},
		{"weight-101", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10, weight: 101}]\n", "spec.realServers[0].weight: Invalid value: 101"},
		{"real-not-ip", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: pod-a}]\n", "spec.realServers[0].ip: Invalid value: \"pod-a\": must be an IP address"},
		{"negative-interval", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10}]\n  healthCheck: {intervalSeconds: -1}\n", "spec.healthCheck.intervalSeconds: Invalid value: -1"},
		{"timeout-over-interval", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10}]\n  healthCheck: {intervalSeconds: 2, timeoutSeconds: 5}\n", "timeoutSeconds must not exceed intervalSeconds"},
		{"bad-check-type", "  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10}]\n  healthCheck: {type: ICMP}\n", "spec.healthCheck.type: Unsupported value: \"ICMP\""},
		{"long-vsname", "  vsName: " + strings.Repeat("a", 64) + "\n  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10}]\n", "spec.vsName: Too long: may not be more than 63"},
		{"group-injection", "  group: \"g\\nwrite memory\"\n  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10}]\n", "spec.group: Invalid value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := apply(tc.name, tc.spec)
			if err == nil {
				t.Fatalf("apiserver accepted it:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("error lacks %q:\n%s", tc.want, out)
			}
		})
	}
}
