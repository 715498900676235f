package apv

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestScanFailoverLinkDownCertExpiry(t *testing.T) {
	now := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	h := newHarness(t, Options{Now: func() time.Time { return now }}, "apv-a")
	e := h.emus["apv-a"]
	ctx := context.Background()
	if err := h.a.Reconcile(ctx, sampleState()); err != nil {
		t.Fatal(err)
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	vs := NamesFor(&sampleState().Services[1]).Virtual
	expiry := now.Add(10 * 24 * time.Hour).Truncate(time.Second)
	e.SetCert("shop_tls", vs, expiry)
	e.SetCert("api_tls", vs, now.Add(200*24*time.Hour))
	e.SetConnections("ea_rt_10.244.1.10_8080", 42)
	e.SetConnections(vs, 17)

	if err := h.a.ScanOnce(ctx); err != nil {
		t.Fatal(err)
	}
	m := h.a.metrics
	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"up", testutil.ToFloat64(m.up.WithLabelValues("apv-a")), 1},
		{"ha active", testutil.ToFloat64(m.haState.WithLabelValues("apv-a", "active")), 1},
		{"ha standby", testutil.ToFloat64(m.haState.WithLabelValues("apv-a", "standby")), 0},
		{"port1 up", testutil.ToFloat64(m.ifaceUp.WithLabelValues("apv-a", "port1")), 1},
		{"cpu", testutil.ToFloat64(m.cpu.WithLabelValues("apv-a")), 0.12},

		{"cert", testutil.ToFloat64(m.certExpiry.WithLabelValues("apv-a", "shop_tls")), float64(expiry.Unix())},
		{"real up", testutil.ToFloat64(m.realUp.WithLabelValues("apv-a", "ea_rt_10.244.1.10_8080")), 1},
		{"real conns", testutil.ToFloat64(m.realConns.WithLabelValues("apv-a", "ea_rt_10.244.1.10_8080")), 42},
		{"virtual up", testutil.ToFloat64(m.virtualUp.WithLabelValues("apv-a", vs)), 1},
		{"virtual conns", testutil.ToFloat64(m.virtualConns.WithLabelValues("apv-a", vs)), 17},
		{"ha configured", testutil.ToFloat64(m.haConfigured.WithLabelValues("apv-a")), 1},
		{"ha domain", testutil.ToFloat64(m.haDomain.WithLabelValues("apv-a", "192.0.2.10,192.0.2.11", "unit_m")), 1},
		{"peer unit up", testutil.ToFloat64(m.haUnitUp.WithLabelValues("apv-a", "unit_s")), 1},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if s := h.status("apv-a"); s.HAState != "active" {
		t.Errorf("status haState = %q", s.HAState)
	}
	ev, ok := h.events.find("apv-a", ReasonCertificateExpiring)
	if !ok || ev.kind != Warning || !strings.Contains(ev.message, "shop_tls") || !strings.Contains(ev.message, "10 days") {
		t.Errorf("certificate event = %+v, %v", ev, ok)
	}
	if slices.Contains(h.events.reasons("apv-a"), ReasonHAStateChanged) || slices.Contains(h.events.reasons("apv-a"), ReasonLinkDown) {
		t.Errorf("first scan raised events for healthy state: %v", h.events.reasons("apv-a"))
	}
	if n := strings.Count(strings.Join(h.events.reasons("apv-a"), ","), ReasonCertificateExpiring); n != 1 {
		t.Errorf("%d CertificateExpiring events, want 1 (api_tls is far from expiry)", n)
	}

	// HA failover, a link going down, a real failing its health check.
	e.SetHA("standby")
	e.SetLink("port2", false)
	e.SetRealHealth("ea_rt_10.244.2.11_8080", false)
	if err := h.a.ScanOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(m.haState.WithLabelValues("apv-a", "active")); v != 0 {
		t.Errorf("ha active after failover = %v", v)
	}
	if v := testutil.ToFloat64(m.haState.WithLabelValues("apv-a", "standby")); v != 1 {
		t.Errorf("ha standby after failover = %v", v)
	}
	if v := testutil.ToFloat64(m.ifaceUp.WithLabelValues("apv-a", "port2")); v != 0 {
		t.Errorf("port2 up = %v", v)
	}
	if v := testutil.ToFloat64(m.realUp.WithLabelValues("apv-a", "ea_rt_10.244.2.11_8080")); v != 0 {
		t.Errorf("real up = %v", v)
	}
	for _, reason := range []string{ReasonHAStateChanged, ReasonLinkDown, ReasonRealDown} {
		if ev, ok := h.events.find("apv-a", reason); !ok || ev.kind != Warning {
			t.Errorf("no %s warning (events: %v)", reason, h.events.reasons("apv-a"))
		}
	}
	if ev, _ := h.events.find("apv-a", ReasonHAStateChanged); !strings.Contains(ev.message, "from active to standby") {
		t.Errorf("HA event message %q", ev.message)
	}
	if s := h.status("apv-a"); s.HAState != "standby" {
		t.Errorf("status haState = %q", s.HAState)
	}
	// The same state again raises nothing new.
	before := len(h.events.reasons("apv-a"))
	if err := h.a.ScanOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if after := len(h.events.reasons("apv-a")); after != before {
		t.Errorf("an unchanged scan raised %d events", after-before)
	}
	// Recovery.
	e.SetLink("port2", true)
	e.SetCert("shop_tls", vs, now.Add(365*24*time.Hour))
	if err := h.a.ScanOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{ReasonLinkUp, ReasonCertificateRenewed} {
		if ev, ok := h.events.find("apv-a", reason); !ok || ev.kind != Normal {
			t.Errorf("no %s event", reason)
		}
	}
}

func TestScanUnreachableDevice(t *testing.T) {
	h := newHarness(t, Options{RequestTimeout: 300 * time.Millisecond}, "apv-a")
	e := h.emus["apv-a"]
	e.SetDown(true)
	if err := h.a.ScanOnce(context.Background()); err == nil {
		t.Fatal("scan of a dead device succeeded")
	}
	if v := testutil.ToFloat64(h.a.metrics.up.WithLabelValues("apv-a")); v != 0 {
		t.Errorf("up = %v", v)
	}
	if _, ok := h.events.find("apv-a", ReasonDeviceUnreachable); !ok {
		t.Error("no DeviceUnreachable event")
	}
	e.SetDown(false)
	if err := h.a.ScanOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.events.find("apv-a", ReasonDeviceReachable); !ok {
		t.Error("no DeviceReachable event")
	}
}

// Series of objects that disappear are deleted, not left at their last
// value.
func TestScanDropsVanishedSeries(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	e.SetLink("port9", true)
	if err := h.a.ScanOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(h.a.metrics.ifaceUp); n != 3 {
		t.Fatalf("interface series = %d, want 3", n)
	}
	e.SetCert("x", "vs", time.Now().Add(time.Hour))
	if err := h.a.ScanOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(h.a.metrics.certExpiry); n != 1 {
		t.Fatalf("cert series = %d, want 1", n)
	}
	e.Reboot(true) // the vhost is gone with the configuration
	if err := h.a.ScanOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(h.a.metrics.certExpiry); n != 0 {
		t.Fatalf("cert series after the vhost vanished = %d, want 0", n)
	}
}

// In the loops, a failover shows up in metrics and events within one scan
// interval.
func TestScanLoopFollowsWithinOneInterval(t *testing.T) {
	const interval = 300 * time.Millisecond
	h := newHarness(t, Options{SyncInterval: time.Hour, ScanInterval: interval}, "apv-a")
	e := h.emus["apv-a"]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	poll.Until(t, 5*time.Second, "first scan", func() (bool, string) {
		st := h.status("apv-a")
		return st.HAState == "active", fmt.Sprintf("%+v", st)
	})
	e.SetHA("standby")
	changed := time.Now()
	poll.Until(t, 5*time.Second, "failover seen", func() (bool, string) {
		_, ok := h.events.find("apv-a", ReasonHAStateChanged)
		standby := testutil.ToFloat64(h.a.metrics.haState.WithLabelValues("apv-a", "standby"))
		return ok && standby == 1, fmt.Sprintf("HAStateChanged event %v, ha_state{state=standby} %v", ok, standby)
	})
	if took := time.Since(changed); took > interval+time.Second {
		t.Errorf("failover seen after %v, scan interval %v", took, interval)
	}
}
