// Package healthcheck owns the agent's health checking: probes of real
// servers and the health of the agent's own connection to the
// kube-apiserver.
//
// This file is the apiserver side. A load balancer or NAT between agent and
// apiserver can drop an established TCP connection silently (no RST). A
// watch on such a connection simply goes quiet, and the kernel gives up on it
// only after its retransmission timeout (~15 minutes): the agent would act on
// nothing for that long. HTTP/2 PING frames sent after ReadIdleTimeout of
// silence, with PingTimeout to answer, find the dead connection in seconds;
// the transport then closes it and client-go's reflectors relist over a new
// one.
package healthcheck

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"

	// Registers the "oidc" auth-provider, the one client-go still ships
	// (the gcp and azure ones were removed in favour of exec plugins).
	_ "k8s.io/client-go/plugin/pkg/client/auth/oidc"
)

// APIServerOptions tune the apiserver connection.
type APIServerOptions struct {
	// ReadIdleTimeout: after this long without a frame, the transport sends
	// an HTTP/2 PING. 0 disables the health check (not recommended).
	ReadIdleTimeout time.Duration
	// PingTimeout: a PING unanswered this long closes the connection.
	PingTimeout time.Duration
	// DialTimeout bounds TCP connect (default 10s).
	DialTimeout time.Duration
	// KeepAlive is the TCP keepalive period (default 30s); a second line of
	// defence for connections HTTP/2 pings do not cover.
	KeepAlive time.Duration
	// StaleAfter: with no watch event for this long while a watch is
	// failing, the config is reported stale. Default 30s.
	StaleAfter time.Duration
}

func (o *APIServerOptions) defaults() {
	o.DialTimeout = cmp.Or(o.DialTimeout, 10*time.Second)
	o.KeepAlive = cmp.Or(o.KeepAlive, 30*time.Second)
	o.StaleAfter = cmp.Or(o.StaleAfter, 30*time.Second)
}

// APIServerMonitor tracks the agent's connection to the apiserver: open
// connections, reconnects, watch failures and the age of the last event.
// It is safe for concurrent use.
type APIServerMonitor struct {
	opts APIServerOptions
	now  func() time.Time

	open       atomic.Int64
	episodes   atomic.Int64 // times the open count went from 0 to 1
	reconnects atomic.Int64
	lastEvent  atomic.Int64 // unix nanos; 0 = never
	watchErrAt atomic.Int64 // unix nanos of the last watch failure not followed by an event

	mu      sync.Mutex
	lastErr string

	resets    prometheus.Counter
	dialFails prometheus.Counter
	stale     prometheus.GaugeFunc
}

// NewAPIServerMonitor registers the connection metrics on reg (nil: none):
// edgeagent_apiserver_connection_resets_total,
// edgeagent_apiserver_dial_failures_total, edgeagent_apiserver_connected,
// edgeagent_apiserver_config_stale and
// edgeagent_apiserver_last_event_age_seconds.
func NewAPIServerMonitor(reg prometheus.Registerer, opts APIServerOptions) *APIServerMonitor {
	opts.defaults()
	m := &APIServerMonitor{opts: opts, now: time.Now}
	m.resets = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgeagent_apiserver_connection_resets_total",
		Help: "Established apiserver connections that were lost or closed (including by the HTTP/2 ping health check).",
	})
	m.dialFails = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgeagent_apiserver_dial_failures_total",
		Help: "Failed attempts to open a connection to the apiserver.",
	})
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edgeagent_apiserver_connected",
		Help: "1 while the agent holds an open connection to the apiserver.",
	}, func() float64 { return b2f(m.Connected()) })
	m.stale = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edgeagent_apiserver_config_stale",
		Help: "1 while the agent's view of the cluster may be out of date (no connection, or watches failing); the last known state stays programmed.",
	}, func() float64 { return b2f(m.Stale()) })
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edgeagent_apiserver_last_event_age_seconds",
		Help: "Seconds since the last watch event or successful list; -1 before the first.",
	}, m.lastEventAge)
	if reg != nil {
		reg.MustRegister(m.resets, m.dialFails, connected, m.stale, age)
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Configure returns a copy of cfg whose connections carry the HTTP/2 health
// check, dial timeout and TCP keepalive, and are reported to m.
//
// client-go builds the transport itself, from the whole config: TLS, proxy,
// client certificates and their rotation, bearer tokens and credential
// plugins (exec and auth-provider, as kubectl runs them for managed
// clusters). Configure adds only a dialer, and the HTTP/2 ping settings on
// the *http.Transport client-go made (per config, where client-go alone
// reads them from process-wide environment variables). That transport is
// built once here and handed to every client made from the returned config,
// so they share its connections; the returned config carries no credentials
// of its own, the transport holds them.
func (m *APIServerMonitor) Configure(cfg *rest.Config) (*rest.Config, error) {
	if cfg.Transport != nil {
		return nil, fmt.Errorf("apiserver transport: config already has a custom transport")
	}
	in := rest.CopyConfig(cfg)
	next := (&net.Dialer{Timeout: m.opts.DialTimeout, KeepAlive: m.opts.KeepAlive}).DialContext
	if cfg.Dial != nil {
		next = cfg.Dial
	}
	in.Dial = m.dial(next)
	var configured bool
	userWrap := cfg.WrapTransport
	// client-go passes its base transport to WrapTransport before it layers
	// authentication on top, so this sees the *http.Transport (possibly in
	// client-go's cache or CA-rotation holder, which unwrap).
	in.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if t := baseTransport(rt); t != nil && t != http.DefaultTransport {
			t.HTTP2 = m.http2Config()
			configured = true
		}
		if userWrap != nil {
			return userWrap(rt)
		}
		return rt
	}
	rt, err := rest.TransportFor(in)
	if err != nil {
		return nil, fmt.Errorf("apiserver transport: %w", err)
	}
	if !configured {
		return nil, fmt.Errorf("apiserver transport: client-go built no HTTP transport of its own to carry the HTTP/2 ping settings")
	}
	out := rest.AnonymousClientConfig(cfg)
	out.TLSClientConfig = rest.TLSClientConfig{}
	out.Dial, out.Proxy = nil, nil
	out.Transport = rt
	return out, nil
}

// http2Config is the HTTP/2 health check as net/http's transport carries it;
// golang.org/x/net/http2, which client-go installs, reads it for every new
// connection and lets it override client-go's environment-derived values.
func (m *APIServerMonitor) http2Config() *http.HTTP2Config {
	c := &http.HTTP2Config{SendPingTimeout: m.opts.ReadIdleTimeout, PingTimeout: m.opts.PingTimeout}
	if c.SendPingTimeout == 0 {
		// Zero there means "keep the transport's own value" (client-go's
		// 30s), not "off": a ping after ~292 years of silence is off.
		c.SendPingTimeout = math.MaxInt64
	}
	return c
}

// baseTransport finds the *http.Transport under client-go's wrappers.
func baseTransport(rt http.RoundTripper) *http.Transport {
	for rt != nil {
		switch t := rt.(type) {
		case *http.Transport:
			return t
		case utilnet.RoundTripperWrapper:
			rt = t.WrappedRoundTripper()
		default:
			return nil
		}
	}
	return nil
}

func (m *APIServerMonitor) dial(next func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			m.dialFails.Inc()
			m.setErr(err.Error())
			return nil, err
		}
		// A reconnect is a connection opened when none was left after an
		// earlier one: concurrent dials at start-up do not count.
		if m.open.Add(1) == 1 && m.episodes.Add(1) > 1 {
			m.reconnects.Add(1)
		}
		m.setErr("")
		return &trackedConn{Conn: c, m: m}, nil
	}
}

// trackedConn counts itself out of the open connections once closed.
type trackedConn struct {
	net.Conn
	m    *APIServerMonitor
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.m.open.Add(-1)
		c.m.resets.Inc()
	})
	return c.Conn.Close()
}

func (m *APIServerMonitor) setErr(s string) {
	m.mu.Lock()
	m.lastErr = s
	m.mu.Unlock()
}

// ObserveEvent records a watch event or a successful list: the connection
// is delivering.
func (m *APIServerMonitor) ObserveEvent() {
	m.lastEvent.Store(m.now().UnixNano())
	m.watchErrAt.Store(0)
}

// WatchError records a failed list or watch (used as an informer's
// WatchErrorHandler).
func (m *APIServerMonitor) WatchError(err error) {
	m.watchErrAt.CompareAndSwap(0, m.now().UnixNano())
	if err != nil {
		m.setErr(err.Error())
	}
}

// Connected reports whether a connection to the apiserver is open.
func (m *APIServerMonitor) Connected() bool { return m.open.Load() > 0 }

// Reconnects is the number of times a connection was opened after every
// earlier one had been closed or lost.
func (m *APIServerMonitor) Reconnects() int64 { return m.reconnects.Load() }

// Stale reports whether the agent's view of the cluster may be out of date:
// no open connection, or a watch failing for longer than StaleAfter.
func (m *APIServerMonitor) Stale() bool {
	if m.episodes.Load() > 0 && !m.Connected() {
		return true
	}
	if at := m.watchErrAt.Load(); at != 0 && m.now().Sub(time.Unix(0, at)) > m.opts.StaleAfter {
		return true
	}
	return false
}

func (m *APIServerMonitor) lastEventAge() float64 {
	at := m.lastEvent.Load()
	if at == 0 {
		return -1
	}
	return m.now().Sub(time.Unix(0, at)).Seconds()
}

// APIServerStatus is the apiserver connection as /status shows it
// (status.APIServer, whose fields it mirrors one for one).
type APIServerStatus struct {
	Connected  bool
	Reconnects int64
	// LastEventAgeSeconds is the time since the last watch event or
	// successful list; -1 when none yet.
	LastEventAgeSeconds float64
	Error               string
}

// Status is the apiserver part of /status. Connected means the agent's view
// is live: a connection is open and watches are not failing (Stale false).
func (m *APIServerMonitor) Status() APIServerStatus {
	m.mu.Lock()
	e := m.lastErr
	m.mu.Unlock()
	return APIServerStatus{
		Connected:           m.Connected() && !m.Stale(),
		Reconnects:          m.Reconnects(),
		LastEventAgeSeconds: m.lastEventAge(),
		Error:               e,
	}
}

// Degraded returns why readiness should report degraded ("" when fine).
// The agent keeps serving its last known state meanwhile.
func (m *APIServerMonitor) Degraded() string {
	if !m.Stale() {
		return ""
	}
	st := m.Status()
	if st.Error != "" {
		return "apiserver: config may be stale: " + st.Error
	}
	return "apiserver: config may be stale: no connection"
}
