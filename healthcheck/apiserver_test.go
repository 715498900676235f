package healthcheck

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestConfigureHTTP2AndConnectionAccounting(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	reg := prometheus.NewRegistry()
	m := NewAPIServerMonitor(reg, APIServerOptions{ReadIdleTimeout: time.Second, PingTimeout: time.Second})
	cfg, err := m.Configure(&rest.Config{Host: srv.URL, BearerToken: "tok", TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	get := func() {
		t.Helper()
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: the bearer token was not sent", resp.StatusCode)
		}
		if resp.Proto != "HTTP/2.0" {
			t.Fatalf("protocol %s, want HTTP/2.0 (the ping health check is HTTP/2 only)", resp.Proto)
		}
	}
	get()
	if !m.Connected() || m.Stale() || m.Reconnects() != 0 {
		t.Fatalf("after first request: connected=%v stale=%v reconnects=%d", m.Connected(), m.Stale(), m.Reconnects())
	}
	srv.CloseClientConnections()
	poll.Until(t, 5*time.Second, "the connection seen closed", func() (bool, string) { return !m.Connected(), "" })
	if m.Connected() || !m.Stale() {
		t.Fatalf("after the server closed the connection: connected=%v stale=%v", m.Connected(), m.Stale())
	}
	if d := m.Degraded(); !strings.Contains(d, "stale") {
		t.Errorf("Degraded() = %q", d)
	}
	get()
	if m.Reconnects() != 1 || !m.Connected() {
		t.Errorf("after a new request: reconnects=%d connected=%v", m.Reconnects(), m.Connected())
	}
	if got := testutil.ToFloat64(m.resets); got < 1 {
		t.Errorf("connection_resets_total = %v", got)
	}
	n, err := testutil.GatherAndCount(reg, "edgeagent_apiserver_connection_resets_total", "edgeagent_apiserver_config_stale",
		"edgeagent_apiserver_last_event_age_seconds", "edgeagent_apiserver_connected")
	if err != nil || n != 4 {
		t.Errorf("metrics: %d series, %v", n, err)
	}
	if st := m.Status(); st.LastEventAgeSeconds != -1 {
		t.Errorf("last event age before any event = %v, want -1", st.LastEventAgeSeconds)
	}
	m.ObserveEvent()
	if st := m.Status(); st.LastEventAgeSeconds < 0 || st.LastEventAgeSeconds > 1 {
		t.Errorf("last event age = %v", st.LastEventAgeSeconds)
	}
}

func TestConfigureRefusesWhatItCannotCarry(t *testing.T) {
	m := NewAPIServerMonitor(nil, APIServerOptions{})
	if _, err := m.Configure(&rest.Config{Host: "https://x", Transport: http.DefaultTransport}); err == nil {
		t.Error("a config with its own transport was accepted: the HTTP/2 ping settings would not reach it")
	}
}

// The "oidc" auth-provider (kubeconfigs made by older OIDC login tools) is
// registered: its still-valid ID token is sent as the bearer token over the
// configured HTTP/2 transport.
func TestConfigureOIDCAuthProvider(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	idToken := b64([]byte(`{"alg":"RS256"}`)) + "." + b64(fmt.Appendf(nil, `{"exp":%d}`, time.Now().Add(time.Hour).Unix())) + ".sig"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+idToken {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	m := NewAPIServerMonitor(nil, APIServerOptions{ReadIdleTimeout: time.Second, PingTimeout: time.Second})
	cfg, err := m.Configure(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		AuthProvider: &clientcmdapi.AuthProviderConfig{Name: "oidc", Config: map[string]string{
			"idp-issuer-url": "https://issuer.invalid", "client-id": "edgeagent", "id-token": idToken,
		}}})
	if err != nil {
		t.Fatalf("Configure with an oidc auth-provider: %v", err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" {
		t.Fatalf("got %d over %s, want 200 over HTTP/2.0 with the ID token as bearer", resp.StatusCode, resp.Proto)
	}
	if !m.Connected() {
		t.Error("the request did not go through the monitored dialer")
	}
}
