package apv

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func configCommandsIn(cmds []string) []string {
	var out []string
	for _, c := range cmds {
		if !strings.HasPrefix(c, "show ") {
			out = append(out, c)
		}
	}
	return out
}

func (h *harness) device(name string) (d struct {
	up, inSync bool
	lastError  string
	normalized []string
}) {
	for _, s := range h.a.Status() {
		if s.Name == name {
			d.up, d.inSync, d.lastError, d.normalized = s.Up, s.InSync, s.LastError, s.NormalizesDifferently
		}
	}
	return d
}

// A device that prints objects back differently from how they were sent
// (spacing, quoting, defaults filled in, a health check split over two
// lines) is written once; what still differs is marked and never rewritten
// in a loop, and it shows in status, a metric and an event. Changing the
// desired object costs one more write; a device that starts printing it as
// sent clears the mark without a write.
func TestNormalizingDeviceIsNotRewrittenForEver(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	e.SetNormalize(true)
	ctx := context.Background()
	st := sampleState()
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	hc := NamesFor(&st.Services[0]).Health // the HTTP check, split by the device
	d := h.device("apv-a")
	if !d.up || !d.inSync || d.lastError != "" || !slices.Equal(d.normalized, []string{"health " + hc}) {
		t.Fatalf("status after the first sync = %+v, want up, in sync, normalizesDifferently [health %s]", d, hc)
	}
	if v := testutil.ToFloat64(h.a.metrics.normalized.WithLabelValues("apv-a")); v != 1 {
		t.Errorf("edgeagent_apv_objects_normalized_differently = %v, want 1", v)
	}
	ev, ok := h.events.find("apv-a", ReasonNormalizesDifferently)
	if !ok || ev.kind != Warning || !strings.Contains(ev.message, hc) || !strings.Contains(ev.message, `GET "/healthz"`) {
		t.Errorf("event = %+v (found %v)", ev, ok)
	}
	if _, bad := h.events.find("apv-a", ReasonDeviceUnreachable); bad {
		t.Error("a device that answers every request was reported unreachable")
	}

	// Idle syncs: nothing is sent, write memory included.
	e.ResetLog()
	for range 5 {
		if err := h.a.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if cmds := configCommandsIn(e.Commands()); len(cmds) != 0 {
		t.Fatalf("idle syncs against a normalizing device sent %v", cmds)
	}
	if n := len(h.events.reasons("apv-a")); n > 3 {
		t.Errorf("events: %v", h.events.reasons("apv-a"))
	}

	// The desired check changes: one rewrite (and one write memory), then
	// idle again.
	st.Services[0].Health.Path = "/ready"
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	e.ResetLog()
	for range 3 {
		if err := h.a.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cmds := configCommandsIn(e.Commands())
	if n := strings.Count(strings.Join(cmds, "\n"), WriteMemory); n != 1 || !slices.Contains(cmds, `slb health "`+hc+`" http 5 2 2 3 GET "/ready" "200-299,301"`) {
		t.Fatalf("after a change, 3 syncs sent %d write memory:\n%s", n, strings.Join(cmds, "\n"))
	}
	if !strings.Contains(strings.Join(e.Running(), "\n"), `"/ready"`) {
		t.Error("the changed check did not reach the device")
	}

	// The device now prints the check as sent: the mark goes, no write.
	e.SetNormalize(false)
	e.ResetLog()
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if cmds := configCommandsIn(e.Commands()); len(cmds) != 0 {
		t.Errorf("sent %v once the device printed the object as sent", cmds)
	}
	if d := h.device("apv-a"); len(d.normalized) != 0 || !d.inSync {
		t.Errorf("status = %+v, want no marked object", d)
	}
	if v := testutil.ToFloat64(h.a.metrics.normalized.WithLabelValues("apv-a")); v != 0 {
		t.Errorf("metric = %v, want 0", v)
	}
}

// blankDevice answers every request with empty contents, like the
// stand-in endpoint of issue 13: it accepts every command and shows
// nothing.
type blankDevice struct {
	mu   sync.Mutex
	cmds []string
}

func (b *blankDevice) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct{ Cmd string }
	_ = json.NewDecoder(r.Body).Decode(&req)
	b.mu.Lock()
	b.cmds = append(b.cmds, req.Cmd)
	b.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]string{"contents": ""})
}

func (b *blankDevice) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.cmds
	b.cmds = nil
	return out
}

func writeCreds(t *testing.T, dir, user, pass string) (string, string) {
	t.Helper()
	u, p := filepath.Join(dir, user+".user"), filepath.Join(dir, user+".pass")
	if err := os.WriteFile(u, []byte(user), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	return u, p
}

// A device that answers every request but reads back differently is not
// unreachable; it is written once and then left alone, and says why.
func TestReadBackDiffersIsNotDeviceUnreachable(t *testing.T) {
	dev := &blankDevice{}
	srv := httptest.NewTLSServer(dev)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	u, p := writeCreds(t, dir, "admin", "pw")
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pemCert(srv), 0o600); err != nil {
		t.Fatal(err)
	}
	events := &recEvents{}
	a, err := New(config.APV{Devices: []config.APVDevice{{Name: "stand-in", URL: srv.URL, UsernameFile: u, PasswordFile: p, CAFile: ca}}},
		Options{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Reconcile(ctx, sampleState()); err != nil {
		t.Fatal(err)
	}
	if err := a.SyncOnce(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
	first := configCommandsIn(dev.take())
	if !slices.Contains(first, WriteMemory) {
		t.Fatalf("first sync sent %v", first)
	}
	for range 3 {
		if err := a.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if cmds := configCommandsIn(dev.take()); len(cmds) != 0 {
		t.Fatalf("later syncs rewrote: %v", cmds)
	}
	s := a.Status()[0]
	if !s.Up || s.LastError != "" || len(s.NormalizesDifferently) == 0 {
		t.Errorf("status = %+v", s)
	}
	if _, bad := events.find("stand-in", ReasonDeviceUnreachable); bad {
		t.Error("reported DeviceUnreachable for a device that answered every request")
	}
	if n := slices.Collect(func(yield func(string) bool) {
		for _, r := range events.reasons("stand-in") {
			if r == ReasonNormalizesDifferently && !yield(r) {
				return
			}
		}
	}); len(n) != 1 {
		t.Errorf("%d NormalizesDifferently events, want one for the sync", len(n))
	}
}

// A device without the enable command still gets its objects; the refusal
// is counted and the sync goes on.
func TestEnableRejectedIsNotFatal(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	ctx := context.Background()
	st := sampleState()
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	e.SetRefuseEnable(true)
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertDeviceEquals(t, e, st)
	if v := testutil.ToFloat64(h.a.metrics.enableRejected.WithLabelValues("apv-a")); v != 11 {
		t.Errorf("enable_rejected_total = %v, want 11 (5 reals, 3 groups, 3 virtuals)", v)
	}
	e.ResetLog()
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if cmds := configCommandsIn(e.Commands()); len(cmds) != 0 {
		t.Errorf("second sync sent %v", cmds)
	}

	// With the command, everything created is enabled.
	h2 := newHarness(t, Options{}, "apv-b")
	if err := h2.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := h2.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	n := NamesFor(&st.Services[0])
	for _, o := range [][2]string{{"virtual", n.Virtual}, {"group", n.Group}, {"real", "ea_rt_10.244.1.10_8080"}} {
		if !h2.emus["apv-b"].Enabled(o[0], o[1]) {
			t.Errorf("%s %s not enabled", o[0], o[1])
		}
	}
}

func pemCert(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}
