package healthcheck

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// A kubeconfig whose credentials come from an exec plugin, as managed
// clusters hand out (aws eks get-token, gke-gcloud-auth-plugin, kubelogin):
// the agent authenticates to a real apiserver with the token the plugin
// prints, over HTTP/2, and the per-config ping settings still find a
// connection that went silent.
func TestCredentialPluginsAgainstAPIServer(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{CRDDir: "-"})
	t.Run("exec", func(t *testing.T) { testExecPlugin(t, s) })
	t.Run("exec-wrong-token", func(t *testing.T) { testExecPluginWrongToken(t, s) })
	t.Run("auth-provider", func(t *testing.T) { testAuthProviderPlugin(t, s) })
}

func testExecPlugin(t *testing.T, s *apiservertest.Server) {
	proxy := startStallProxy(t, fmt.Sprintf("127.0.0.1:%d", s.Port))
	dir := t.TempDir()

	m := NewAPIServerMonitor(nil, APIServerOptions{ReadIdleTimeout: time.Second, PingTimeout: time.Second})
	cfg, err := m.Configure(execKubeconfig(t, dir, "https://"+proxy.addr, s.CAFile, s.Token))
	if err != nil {
		t.Fatalf("Configure refused an exec-plugin kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace with the plugin's token: %v", err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	if len(calls) == 0 {
		t.Fatal("the request succeeded but the exec plugin never ran: the token came from elsewhere")
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get("https://" + proxy.addr + "/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" {
		t.Fatalf("GET /version: %d %s, want 200 over HTTP/2.0 (the ping health check is HTTP/2 only)", resp.StatusCode, resp.Proto)
	}
	if !m.Connected() {
		t.Fatal("monitor sees no open connection after two requests")
	}

	// The path goes silent without a FIN or RST, as behind a NAT that lost
	// its state. client-go alone would ping after 30 s of silence and wait
	// 15 s more (HTTP2_READ_IDLE_TIMEOUT_SECONDS, HTTP2_PING_TIMEOUT_SECONDS);
	// this config asks for 1 s + 1 s.
	proxy.stall(true)
	detected := poll.Every(20*time.Millisecond).Until(t, 15*time.Second, "the silent connection closed (the HTTP/2 ping settings applied)", func() (bool, string) {
		return !m.Connected(), "connection still open"
	})
	if detected > 5*time.Second {
		t.Errorf("dead connection found after %s, want within readIdleTimeout + pingTimeout (2 s) and some slack", detected.Round(time.Millisecond))
	}
	t.Logf("silent connection closed %s after the stall (readIdleTimeout 1s + pingTimeout 1s)", detected.Round(time.Millisecond))

	proxy.stall(false)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("after the path healed: %v", err)
	}
	if m.Reconnects() != 1 || !m.Connected() {
		t.Errorf("after the path healed: reconnects=%d connected=%v, want 1 and true", m.Reconnects(), m.Connected())
	}
}

// The apiserver really checks the plugin's token: a plugin that prints a
// wrong one is refused, so the test above cannot pass on anonymous access.
func testExecPluginWrongToken(t *testing.T, s *apiservertest.Server) {
	m := NewAPIServerMonitor(nil, APIServerOptions{ReadIdleTimeout: time.Second, PingTimeout: time.Second})
	cfg, err := m.Configure(execKubeconfig(t, t.TempDir(), s.URL, s.CAFile, "not-the-token"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("wrong plugin token: err = %v, want 401 Unauthorized", err)
	}
}

// An auth-provider plugin (the older kubeconfig form, "user: {auth-provider:
// {name, config}}") layers its credentials on the transport Configure made.
func testAuthProviderPlugin(t *testing.T, s *apiservertest.Server) {
	if err := rest.RegisterAuthProviderPlugin("edgeagent-test", func(_ string, cfg map[string]string, _ rest.AuthProviderConfigPersister) (rest.AuthProvider, error) {
		return tokenAuthProvider(cfg["token"]), nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token string
		ok    bool
	}{{s.Token, true}, {"not-the-token", false}} {
		rc := &rest.Config{
			Host:            s.URL,
			TLSClientConfig: rest.TLSClientConfig{CAFile: s.CAFile},
			AuthProvider:    &clientcmdapi.AuthProviderConfig{Name: "edgeagent-test", Config: map[string]string{"token": tc.token}},
		}
		m := NewAPIServerMonitor(nil, APIServerOptions{ReadIdleTimeout: time.Second, PingTimeout: time.Second})
		cfg, err := m.Configure(rc)
		if err != nil {
			t.Fatalf("Configure refused an auth-provider config: %v", err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		cancel()
		switch {
		case tc.ok && err != nil:
			t.Errorf("with the right token: %v", err)
		case !tc.ok && !apierrors.IsUnauthorized(err):
			t.Errorf("with a wrong token: err = %v, want 401 Unauthorized", err)
		}
		if tc.ok && !m.Connected() {
			t.Error("monitor saw no connection: the auth provider's requests bypassed the configured transport")
		}
	}
}

type tokenAuthProvider string

func (p tokenAuthProvider) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+string(p))
		return rt.RoundTrip(r)
	})
}

func (tokenAuthProvider) Login() error { return nil }

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// execKubeconfig writes an exec plugin (a shell script printing an
// ExecCredential with token, and noting each run in dir/calls) and a
// kubeconfig that uses it, and loads the kubeconfig as the agent does.
func execKubeconfig(t *testing.T, dir, server, caFile, token string) *rest.Config {
	t.Helper()
	plugin := filepath.Join(dir, "credential-plugin")
	script := fmt.Sprintf(`#!/bin/sh
echo run >> %q
printf '%%s\n' '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}'
`, filepath.Join(dir, "calls"), token)
	if err := os.WriteFile(plugin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority: %q}
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: %q
      interactiveMode: Never
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`, server, caFile, plugin)
	if err := os.WriteFile(kc, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	if rc.ExecProvider == nil {
		t.Fatal("kubeconfig loaded without its exec provider")
	}
	return rc
}

// stallProxy forwards TCP to a target. Stalled, it keeps reading from both
// sides but delivers nothing, and closes nothing: a path that went silent.
type stallProxy struct {
	addr string
	mu   sync.Mutex
	cond *sync.Cond
	held bool
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String()}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	var conns []net.Conn
	var connsMu sync.Mutex
	track := func(c net.Conn) {
		connsMu.Lock()
		conns = append(conns, c)
		connsMu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(u)
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(u, c) }()
			go func() { defer wg.Done(); p.pipe(c, u) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.stall(false)
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *stallProxy) stall(on bool) {
	p.mu.Lock()
	p.held = on
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.held {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
