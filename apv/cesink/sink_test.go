package cesink

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/arraynetworks/edgeagent/apv"
	"github.com/arraynetworks/edgeagent/apv/apvemu"
	"github.com/arraynetworks/edgeagent/config"
)

// receiver is a CloudEvents HTTP receiver built from the same SDK, on a
// loopback port. nack makes it refuse the first n deliveries with HTTP 503.
type receiver struct {
	url  string
	nack atomic.Int32
	mu   sync.Mutex
	got  []cloudevents.Event
}

func startReceiver(t *testing.T) *receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudevents.NewClientHTTP(cehttp.WithListener(l))
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{url: "http://" + l.Addr().String() + "/"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.StartReceiver(ctx, func(_ context.Context, e cloudevents.Event) protocol.Result {
			if r.nack.Add(-1) >= 0 {
				return cehttp.NewResult(http.StatusServiceUnavailable, "busy")
			}
			r.mu.Lock()
			r.got = append(r.got, e)
			r.mu.Unlock()
			return cloudevents.ResultACK
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *receiver) events() []cloudevents.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cloudevents.Event(nil), r.got...)
}

// delivered holds once r has n events and s counts n delivered.
func delivered(r *receiver, s *Sink, n int) func() (bool, string) {
	return func() (bool, string) {
		got, st := len(r.events()), s.Status()
		return got == n && st.Delivered == uint64(n), fmt.Sprintf("receiver has %d events, sink status %+v", got, st)
	}
}

func run(t *testing.T, s *Sink) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestDeliversTypedEventsToAReceiver(t *testing.T) {
	r := startReceiver(t)
	reg := prometheus.NewRegistry()
	s, err := New(Options{URL: r.url, Node: "edge-1", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	at := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	for _, e := range []apv.Event{
		{Device: "apv-a", Type: apv.Warning, Reason: apv.ReasonCertificateExpiring, Object: "shop_tls", Message: "expires in 10 days", Time: at},
		{Device: "apv-a", Type: apv.Warning, Reason: apv.ReasonRealDown, Object: "ea_rt_10.244.2.11_8080", Message: "down", Time: at},
		{Device: "apv-b", Type: apv.Warning, Reason: apv.ReasonHAStateChanged, Object: "unit_m", Message: "active to standby", Time: at},
		{Device: "apv-b", Type: apv.Warning, Reason: apv.ReasonLinkDown, Object: "port2", Message: "no carrier", Time: at},
		{Device: "apv-b", Type: apv.Warning, Reason: apv.ReasonCPUHigh, Message: "95%", Time: at},
	} {
		s.Event(e)
	}
	// The receiver holds an event before the sender has its answer.
	poll.Until(t, 10*time.Second, "5 events delivered", delivered(r, s, 5))
	want := []struct{ typ, source, subject, reason string }{
		{TypeTLS, "/apv/apv-a", "shop_tls", apv.ReasonCertificateExpiring},
		{TypeSLB, "/apv/apv-a", "ea_rt_10.244.2.11_8080", apv.ReasonRealDown},
		{TypeBase, "/apv/apv-b", "unit_m", apv.ReasonHAStateChanged},
		{TypeBase, "/apv/apv-b", "port2", apv.ReasonLinkDown},
		{TypeBase, "/apv/apv-b", "", apv.ReasonCPUHigh},
	}
	ids := map[string]bool{}
	for i, e := range r.events() {
		w := want[i]
		if e.Type() != w.typ || e.Source() != w.source || e.Subject() != w.subject || e.SpecVersion() != "1.0" {
			t.Errorf("event %d = type %q source %q subject %q, want %+v", i, e.Type(), e.Source(), e.Subject(), w)
		}
		ext := e.Extensions()
		if ext["reason"] != w.reason || ext["severity"] != apv.Warning || ext["device"] != w.source[len("/apv/"):] {
			t.Errorf("event %d extensions = %v", i, ext)
		}
		var d Data
		if err := e.DataAs(&d); err != nil || d.Node != "edge-1" || d.Reason != w.reason || !d.Time.Equal(at) || d.Message == "" {
			t.Errorf("event %d data = %+v, %v", i, d, err)
		}
		if !e.Time().Equal(at) || ids[e.ID()] || e.ID() == "" {
			t.Errorf("event %d time %v id %q", i, e.Time(), e.ID())
		}
		ids[e.ID()] = true
	}
	if st := s.Status(); st.Delivered != 5 || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("status = %+v", st)
	}
	if v := testutil.ToFloat64(s.results.WithLabelValues("delivered")); v != 5 {
		t.Errorf("delivered = %v", v)
	}
}

// A receiver that refuses twice gets the event on the third attempt; one
// that never accepts costs a counted failure, and the next event still
// goes through.
func TestRetriesThenCountsFailure(t *testing.T) {
	r := startReceiver(t)
	s, err := New(Options{URL: r.url, Retries: 2, retryBase: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	r.nack.Store(2)
	s.Event(apv.Event{Device: "apv-a", Type: apv.Warning, Reason: apv.ReasonLinkDown, Object: "port2"})
	poll.Until(t, 10*time.Second, "delivery after two refusals", delivered(r, s, 1))
	if v := testutil.ToFloat64(s.retries); v != 2 {
		t.Errorf("retries = %v, want 2", v)
	}
	r.nack.Store(3) // all three attempts refused
	s.Event(apv.Event{Device: "apv-a", Type: apv.Warning, Reason: apv.ReasonLinkDown, Object: "port3"})
	poll.Until(t, 10*time.Second, "a counted failure", func() (bool, string) {
		st := s.Status()
		return st.Failed == 1, fmt.Sprintf("%+v", st)
	})
	if st := s.Status(); st.LastError == "" || st.Delivered != 1 {
		t.Errorf("status = %+v", st)
	}
	s.Event(apv.Event{Device: "apv-a", Type: apv.Normal, Reason: apv.ReasonLinkUp, Object: "port3"})
	poll.Until(t, 10*time.Second, "the next event", delivered(r, s, 2))
	if st := s.Status(); st.LastError != "" {
		t.Errorf("lastError after a delivery = %q", st.LastError)
	}
}

// A sink that accepts connections and never answers: Event never waits for
// it. Events beyond the queue are dropped and counted, and every queued
// one ends as a counted failure.
func TestDeadSinkNeverBlocks(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); srv.Close() })
	s, err := New(Options{URL: srv.URL, QueueSize: 4, Timeout: 50 * time.Millisecond, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	for i := range 1000 {
		s.Event(apv.Event{Device: "apv-a", Type: apv.Warning, Reason: apv.ReasonRealDown, Object: string(rune('a' + i%26))})
	}
	st := s.Status()
	if st.Dropped < 1000-4-1 {
		t.Fatalf("dropped %d of 1000 with a queue of 4", st.Dropped)
	}
	poll.Until(t, 10*time.Second, "queued events to fail", func() (bool, string) {
		st := s.Status()
		return st.Failed+st.Dropped == 1000 && st.Queued == 0, fmt.Sprintf("%+v", st)
	})
	if v := testutil.ToFloat64(s.results.WithLabelValues("failed")); v == 0 {
		t.Error("failures not counted")
	}
}

func TestNewRefusesBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://"} {
		if _, err := New(Options{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

// The scan loop hands its events to a dead sink and goes on: a scan that
// raises more events than the queue holds completes, and the excess is
// counted as dropped.
func TestScanWithDeadSink(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); srv.Close() })
	s, err := New(Options{URL: srv.URL, QueueSize: 2, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)

	e := apvemu.New(t, "admin", "pw")
	dir := t.TempDir()
	u, p := filepath.Join(dir, "u"), filepath.Join(dir, "p")
	_ = os.WriteFile(u, []byte("admin"), 0o600)
	_ = os.WriteFile(p, []byte("pw"), 0o600)
	ca, _ := e.WriteCA(dir)
	var lines []string
	for i := range 40 {
		lines = append(lines, fmt.Sprintf(`slb real tcp "r%d" 10.0.0.%d 80 65535 none`, i, i+1))
		e.SetRealHealth(fmt.Sprintf("r%d", i), false)
	}
	if err := e.Apply(lines...); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a, err := apv.New(config.APV{Devices: []config.APVDevice{{Name: "apv-a", URL: e.URL(), UsernameFile: u, PasswordFile: p, CAFile: ca}}},
		apv.Options{Events: apv.Sinks{s}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ScanOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.Dropped < 40-2-1 {
		t.Errorf("status = %+v: 40 RealDown events, a queue of 2", st)
	}
	if n, err := testutil.GatherAndCount(reg, "edgeagent_apv_scans_total"); err != nil || n != 1 {
		t.Errorf("scans_total series = %d, %v", n, err)
	}
}
