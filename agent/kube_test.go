package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// With source.dir empty the agent runs on the Kubernetes source: it sees
// LBRoutes, writes their status, and reports the apiserver connection.
func TestFromConfigKubernetes(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`nodeName: edge-1
source: {kubeconfig: %s}
vipPools: [{cidr: 10.200.0.0/24}]
bgp: {enabled: false}
kubernetes: {namespace: default, neighborStatus: false}
`, s.Kubeconfig)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := FromConfig(ctx, cfg, slog.Default(), prometheus.NewRegistry(), WithNetns(testns.New(t, "agent").Name))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	route := `{"apiVersion":"apv.arraynetworks.com/v1alpha1","kind":"LBRoute","metadata":{"name":"web","namespace":"default"},
"spec":{"vsIP":"10.200.0.10","ports":[{"port":80}],"realServers":[{"ip":"10.244.1.10"}]}}`
	f := filepath.Join(dir, "route.json")
	if err := os.WriteFile(f, []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Kubectl(ctx, "apply", "-f", f); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the LBRoute served and Accepted", func() (bool, string) {
		st := b.Agent.Status()
		out, _ := s.Kubectl(ctx, "get", "lbr", "web", "-o", `jsonpath={.status.conditions[?(@.type=="Accepted")].status} {.status.conditions[?(@.type=="Programmed")].message} {.status.vsName}`)
		return st.Mode == "kubernetes" && len(st.VirtualServices) == 1 && st.APIServer.Connected && strings.TrimSpace(out) == "True programmed on 1 of 1 nodes default-web",
			fmt.Sprintf("agent status %+v; LBRoute status %q", st.APIServer, out)
	})
}

// The agent's apiserver clients do not ask for gzip unless
// apiserver.compression is true: the apiserver compresses a large list
// (and a watch) for each client that asks.
func TestAPIServerCompression(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{CRDDir: "-"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := kubernetes.NewForConfigOrDie(s.Config())
	// A list well above the apiserver's 128 KB compression threshold.
	for i := range 40 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i), Namespace: "default"},
			Data: map[string]string{"x": strings.Repeat(fmt.Sprintf("%08d", i), 512)}}
		if _, err := admin.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name        string
		compression *bool
		wantGzip    bool
	}{{"default", nil, false}, {"compression: true", ptrTo(true), true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{NodeName: "edge-1", Source: config.Source{Kubeconfig: s.Kubeconfig},
				Kubernetes: config.Kubernetes{Namespace: "default"}}
			cfg.APIServer.Compression = tc.compression
			cfg.ApplyDefaults()
			parts, err := buildKube(cfg, slog.Default(), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			hc, err := rest.HTTPClientFor(parts.source.RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Config().Host+"/api/v1/namespaces/default/configmaps", nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || len(body) < 128<<10 {
				t.Fatalf("list: %s, %d bytes", resp.Status, len(body))
			}
			// The transport asked for gzip itself (and decompressed) exactly
			// when compression is on.
			if resp.Uncompressed != tc.wantGzip {
				t.Errorf("response gzip-compressed: %v, want %v", resp.Uncompressed, tc.wantGzip)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }
