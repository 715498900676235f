package apv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/poll"

	"github.com/arraynetworks/edgeagent/apv/apvemu"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	testUser = "admin"
	testPass = "s3cret-p@ss"
)

type event struct{ device, kind, reason, object, message string }

type recEvents struct {
	mu sync.Mutex
	ev []event
}

func (r *recEvents) Event(e Event) {
	r.mu.Lock()
	r.ev = append(r.ev, event{e.Device, e.Type, e.Reason, e.Object, e.Message})
	r.mu.Unlock()
}

func (r *recEvents) reasons(device string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.ev {
		if e.device == device {
			out = append(out, e.reason)
		}
	}
	return out
}

func (r *recEvents) find(device, reason string) (event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.ev {
		if e.device == device && e.reason == reason {
			return e, true
		}
	}
	return event{}, false
}

type harness struct {
	a      *Appliance
	emus   map[string]*apvemu.Emulator
	events *recEvents
	reg    *prometheus.Registry
}

// newHarness starts one emulator per name and an Appliance driving them
// through real TLS (the emulator's certificate as caFile) and credentials
// read from files.
func newHarness(t testing.TB, o Options, names ...string) *harness {
	t.Helper()
	dir := t.TempDir()
	userFile, passFile := filepath.Join(dir, "username"), filepath.Join(dir, "password")
	if err := os.WriteFile(userFile, []byte(testUser+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(passFile, []byte(testPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &harness{emus: map[string]*apvemu.Emulator{}, events: &recEvents{}, reg: prometheus.NewRegistry()}
	var cfg config.APV
	for _, n := range names {
		e := apvemu.New(t, testUser, testPass)
		ca, err := e.WriteCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		h.emus[n] = e
		cfg.Devices = append(cfg.Devices, config.APVDevice{Name: n, URL: e.URL(), UsernameFile: userFile, PasswordFile: passFile, CAFile: ca})
	}
	o.Registerer = h.reg
	o.Events = h.events
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 2 * time.Second
	}
	a, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	h.a = a
	return h
}

// deviceConfig parses what the emulator runs (owned objects only).
func deviceConfig(e *apvemu.Emulator) Config {
	c, _ := ParseConfig(strings.Join(e.Running(), "\n"))
	return c
}

func assertDeviceEquals(t *testing.T, e *apvemu.Emulator, s model.State) {
	t.Helper()
	want := mustRender(t, s)
	got := deviceConfig(e)
	if !slices.Equal(got.Lines(), want.Lines()) {
		t.Fatalf("device config differs from desired:\n--- device\n%s\n--- desired\n%s", strings.Join(got.Lines(), "\n"), strings.Join(want.Lines(), "\n"))
	}
	saved, _ := ParseConfig(strings.Join(e.Saved(), "\n"))
	if !slices.Equal(saved.Lines(), want.Lines()) {
		t.Fatalf("saved config differs from desired (write memory missing?)")
	}
}

func (h *harness) status(name string) (out struct {
	Up, InSync bool
	LastError  string
	HAState    string
}) {
	for _, s := range h.a.Status() {
		if s.Name == name {
			out.Up, out.InSync, out.LastError, out.HAState = s.Up, s.InSync, s.LastError, s.HAState
		}
	}
	return out
}

var foreignConfig = []string{
	`slb real tcp "rs1" 172.16.0.9 80 1000 tcp 3 3`,
	`slb group method "gm1" rr`,
	`slb group member "gm1" "rs1" 1`,
	`slb virtual tcp "vs1" 172.16.0.3 80 arp 0`,
	`slb policy default "vs1" "gm1"`,
}

func TestSyncCreateUpdateDelete(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	if err := e.Apply(foreignConfig...); err != nil {
		t.Fatal(err)
	}
	foreign := e.Running()
	ctx := context.Background()

	// Before the first Reconcile the agent touches nothing.
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.Commands()); n != 0 {
		t.Fatalf("sent %d commands before any desired state", n)
	}

	st := sampleState()
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertDeviceEquals(t, e, st)
	if s := h.status("apv-a"); !s.Up || !s.InSync || s.LastError != "" {
		t.Errorf("status after sync: %+v", s)
	}

	// A second sync sends no configuration command (and no write memory).
	e.ResetLog()
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range e.Commands() {
		if !strings.HasPrefix(c, "show ") {
			t.Errorf("idle sync sent %q", c)
		}
	}

	// Update.
	st.Services[0].Reals = []model.Real{real4("10.244.1.10", 8080, 5), real4("10.244.4.13", 8080, 1)}
	st.Services[0].Health.Path = "/ready"
	st.Services[2].Policy = model.RoundRobin
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertDeviceEquals(t, e, st)

	// Delete everything: only the foreign objects remain, untouched.
	if err := h.a.Reconcile(ctx, model.State{}); err != nil {
		t.Fatal(err)
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.Running(); !slices.Equal(got, foreign) {
		t.Errorf("after deleting everything the device holds:\n%s\nwant only the foreign objects:\n%s", strings.Join(got, "\n"), strings.Join(foreign, "\n"))
	}
	for _, c := range e.ConfigCommands() {
		if strings.Contains(c, `"rs1"`) || strings.Contains(c, `"gm1"`) || strings.Contains(c, `"vs1"`) {
			t.Errorf("touched a foreign object: %s", c)
		}
	}
	if v := testutil.ToFloat64(h.a.metrics.inSync.WithLabelValues("apv-a")); v != 1 {
		t.Errorf("edgeagent_apv_in_sync = %v", v)
	}
}

func TestDriftAndRebootRepaired(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	ctx := context.Background()
	st := sampleState()
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	n := NamesFor(&st.Services[0])
	// Hand edits: a policy removed, a member's weight changed, a stray
	// owned real added.
	if err := e.Apply(
		"no slb policy default "+q(n.Virtual),
		"no slb group member "+q(n.Group)+` "ea_rt_10.244.1.10_8080"`,
		"slb group member "+q(n.Group)+` "ea_rt_10.244.1.10_8080" 7`,
		`slb real tcp "ea_rt_192.0.2.99_80" 192.0.2.99 80 65535 none`,
	); err != nil {
		t.Fatal(err)
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertDeviceEquals(t, e, st)

	// A reboot into an empty configuration.
	e.Reboot(true)
	if got := deviceConfig(e); !got.Empty() {
		t.Fatal("reboot left configuration")
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertDeviceEquals(t, e, st)
}

// The Run loop repairs drift within one sync period.
func TestRunLoopRepairsDriftWithinOnePeriod(t *testing.T) {
	const period = 300 * time.Millisecond
	h := newHarness(t, Options{SyncInterval: period, ScanInterval: time.Hour}, "apv-a")
	e := h.emus["apv-a"]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	st := sampleState()
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "initial sync", h.inSync("apv-a"))
	e.Reboot(true)
	rebootAt := time.Now()
	want := mustRender(t, st).Lines()
	poll.Until(t, 5*time.Second, "repair after reboot", func() (bool, string) {
		saved, _ := ParseConfig(strings.Join(e.Saved(), "\n"))
		return slices.Equal(saved.Lines(), want), strings.Join(saved.Lines(), "\n")
	})
	// Within one period plus the time the sync itself takes.
	if took := time.Since(rebootAt); took > period+2*time.Second {
		t.Errorf("repair took %v", took)
	}
	assertDeviceEquals(t, e, st)
}

// inSync holds once device name's status says in sync.
func (h *harness) inSync(name string) func() (bool, string) {
	return func() (bool, string) {
		st := h.status(name)
		return st.InSync, fmt.Sprintf("%+v", st)
	}
}

func TestMidSequenceFailureCompletedByNextSync(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	ctx := context.Background()
	st := sampleState()
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	e.FailConfigCommand(7, 500)
	err := h.a.SyncOnce(ctx)
	var he *HTTPError
	if !errors.As(err, &he) || he.Code != 500 || !strings.Contains(err.Error(), "command 7 of") {
		t.Fatalf("err = %v, want HTTP 500 at command 7", err)
	}
	if s := h.status("apv-a"); s.InSync || s.LastError == "" {
		t.Errorf("status after failed sync: %+v", s)
	}
	if got := deviceConfig(e); got.Empty() || len(got.Lines()) >= len(mustRender(t, st).Lines()) {
		t.Fatalf("expected a partial configuration, got %d lines", len(got.Lines()))
	}
	if _, ok := h.events.find("apv-a", ReasonSyncFailed); !ok {
		t.Error("no SyncFailed event")
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertDeviceEquals(t, e, st)
	if s := h.status("apv-a"); !s.InSync || s.LastError != "" {
		t.Errorf("status after repair: %+v", s)
	}
}

// A failure of write memory alone is retried even though nothing is left
// to change.
func TestWriteMemoryFailureRetried(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	ctx := context.Background()
	st := sampleState()
	_ = h.a.Reconcile(ctx, st)
	ncmds := len(Diff(Config{}, mustRender(t, st)))
	// show running and every command pass, write memory answers 503.
	e.FailAfterRequests(1+ncmds, 1, 503)
	if err := h.a.SyncOnce(ctx); err == nil || !strings.Contains(err.Error(), "write memory") {
		t.Fatalf("err = %v, want a write memory failure", err)
	}
	if len(e.Saved()) != 0 {
		t.Fatal("saved despite the failure")
	}
	e.ResetLog()
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(e.Commands(), WriteMemory) || len(e.ConfigCommands()) != 0 {
		t.Errorf("retry sent %v, want only reads and write memory", e.Commands())
	}
	assertDeviceEquals(t, e, st)
}

func TestTwoDevicesOneDown(t *testing.T) {
	h := newHarness(t, Options{SyncInterval: 200 * time.Millisecond, ScanInterval: time.Hour, RequestTimeout: 500 * time.Millisecond}, "apv-a", "apv-b")
	a, b := h.emus["apv-a"], h.emus["apv-b"]
	b.SetDelay(30 * time.Second) // b hangs: every request times out
	ctx := context.Background()
	st := sampleState()
	if err := h.a.Reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := h.a.SyncOnce(ctx)
	if err == nil || !strings.Contains(err.Error(), "apv-b") || strings.Contains(err.Error(), "apv-a:") {
		t.Fatalf("err = %v, want a failure of apv-b only", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("SyncOnce took %v with one device hanging", took)
	}
	assertDeviceEquals(t, a, st)
	if s := h.status("apv-b"); s.Up || s.InSync {
		t.Errorf("apv-b status: %+v", s)
	}
	if _, ok := h.events.find("apv-b", ReasonDeviceUnreachable); !ok {
		t.Error("no DeviceUnreachable event for apv-b")
	}

	// In the loops, the live device keeps syncing while b is down, and b
	// is repaired once it answers again.
	b.SetDelay(0)
	b.SetDown(true)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = h.a.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	st.Services[0].Reals = append(st.Services[0].Reals, real4("10.244.9.9", 8080, 1))
	_ = h.a.Reconcile(ctx, st)
	poll.Until(t, 5*time.Second, "apv-a in sync with the new real", func() (bool, string) {
		_, ok := deviceConfig(a).Reals["ea_rt_10.244.9.9_8080"]
		st := h.status("apv-a")
		return ok && st.InSync, fmt.Sprintf("real on the device %v, status %+v", ok, st)
	})
	b.SetDown(false)
	poll.Until(t, 10*time.Second, "apv-b repaired after coming back", h.inSync("apv-b"))
	assertDeviceEquals(t, b, st)
	if _, ok := h.events.find("apv-b", ReasonDeviceReachable); !ok {
		t.Error("no DeviceReachable event for apv-b")
	}
}

func TestInjectionRefusedBeforeAnythingIsSent(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	ctx := context.Background()
	st := sampleState()
	st.Services[0].Group = "g\nwrite memory"
	err := h.a.Reconcile(ctx, st)
	if err == nil || !strings.Contains(err.Error(), "group") || !strings.Contains(err.Error(), "shop/web/TCP/80") {
		t.Fatalf("Reconcile err = %v, want the group of shop/web/TCP/80 refused", err)
	}
	if n := len(e.Commands()); n != 0 {
		t.Fatalf("Reconcile sent %d commands", n)
	}
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range e.Commands() {
		if strings.ContainsAny(c, "\n\r") || strings.Contains(c, "g\\n") || strings.Contains(c, "g write") {
			t.Errorf("sent %q", c)
		}
	}
	if len(e.Saved()) == 0 {
		t.Error("the other services were not synced")
	}
	if _, ok := deviceConfig(e).Virtuals[NamesFor(&sampleState().Services[0]).Virtual]; ok {
		t.Error("refused service reached the device")
	}

	// The client refuses such a line even if a caller builds one.
	e.ResetLog()
	for _, bad := range []string{"show running\nwrite memory", `slb real tcp "a" 1.2.3.4 80` + "\r", `show ssl certificate "x`} {
		if _, err := h.a.devices[0].client.Run(ctx, bad); err == nil {
			t.Errorf("client sent %q", bad)
		}
	}
	if n := len(e.Commands()); n != 0 {
		t.Errorf("client sent %d requests for refused lines", n)
	}
}

func TestAuthFailureAndTimeout(t *testing.T) {
	h := newHarness(t, Options{RequestTimeout: 300 * time.Millisecond}, "apv-a")
	e := h.emus["apv-a"]
	ctx := context.Background()
	_ = h.a.Reconcile(ctx, sampleState())

	e.SetAuthFail(true)
	err := h.a.SyncOnce(ctx)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), testPass) || strings.Contains(h.status("apv-a").LastError, testPass) {
		t.Error("password leaked into an error")
	}
	if h.status("apv-a").Up {
		t.Error("device up despite refused credentials")
	}
	e.SetAuthFail(false)

	e.SetDelay(2 * time.Second)
	err = h.a.SyncOnce(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	e.SetDelay(0)

	// A slow but timely device still syncs.
	e.SetDelay(20 * time.Millisecond)
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertDeviceEquals(t, e, sampleState())
	if v := testutil.ToFloat64(h.a.metrics.up.WithLabelValues("apv-a")); v != 1 {
		t.Errorf("edgeagent_apv_up = %v", v)
	}
}

// TestBackoff checks the documented retry schedule (docs/apv.md): 1s, 2s,
// 4s, ... up to the loop's interval, per device, from 1s again after a
// success.
func TestBackoff(t *testing.T) {
	b := newBackoff(30 * time.Second)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	var got []time.Duration
	for range want {
		got = append(got, retryIn(b, "apv-a"))
	}
	if !slices.Equal(got, want) {
		t.Errorf("after failures in a row: %v, want %v", got, want)
	}
	if d := retryIn(b, "apv-b"); d != time.Second {
		t.Errorf("another device's first failure: %v, want 1s (each device has its own)", d)
	}
	b.Reset("apv-a")
	if d := retryIn(b, "apv-a"); d != time.Second {
		t.Errorf("first failure after a success: %v, want 1s", d)
	}
	if d := retryIn(newBackoff(200*time.Millisecond), "apv-a"); d != 200*time.Millisecond {
		t.Errorf("interval under 1s: %v, want the interval", d)
	}
}

func TestTLSVerification(t *testing.T) {
	e := apvemu.New(t, testUser, testPass)
	dir := t.TempDir()
	u, p := filepath.Join(dir, "u"), filepath.Join(dir, "p")
	_ = os.WriteFile(u, []byte(testUser), 0o600)
	_ = os.WriteFile(p, []byte(testPass), 0o600)
	// No CA: the emulator's self-signed certificate is refused.
	c, err := NewClient(ClientConfig{URL: e.URL(), UsernameFile: u, PasswordFile: p})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), "show version"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a certificate verification failure", err)
	}
	if n := len(e.Commands()); n != 0 {
		t.Errorf("emulator answered %d commands over an unverified connection", n)
	}
	ca, _ := e.WriteCA(dir)
	c, err = NewClient(ClientConfig{URL: e.URL() + "/", UsernameFile: u, PasswordFile: p, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.Run(context.Background(), "show version"); err != nil || !strings.Contains(out, "ArrayOS") {
		t.Fatalf("show version = %q, %v", out, err)
	}
	if _, err := NewClient(ClientConfig{URL: e.URL(), CAFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("missing caFile accepted")
	}
}

func TestCLIErrorIsNotTransport(t *testing.T) {
	h := newHarness(t, Options{}, "apv-a")
	e := h.emus["apv-a"]
	_, err := h.a.devices[0].client.Run(context.Background(), `no slb real tcp "nope"`)
	var ce *CLIError
	if !errors.As(err, &ce) || Transport(err) {
		t.Fatalf("err = %v, want a CLIError", err)
	}
	if len(e.Commands()) != 1 {
		t.Errorf("commands: %v", e.Commands())
	}
}

// An agent that may not write reads and compares, and sends nothing.
func TestMayWriteGate(t *testing.T) {
	var mayWrite bool
	h := newHarness(t, Options{MayWrite: func() bool { return mayWrite }}, "apv-a")
	e := h.emus["apv-a"]
	ctx := context.Background()
	st := sampleState()
	_ = h.a.Reconcile(ctx, st)
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if c := e.ConfigCommands(); len(c) != 0 || slices.Contains(e.Commands(), WriteMemory) {
		t.Fatalf("observer sent %v", e.Commands())
	}
	if s := h.status("apv-a"); s.InSync || !s.Up {
		t.Errorf("observer status: %+v", s)
	}
	mayWrite = true
	if err := h.a.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	assertDeviceEquals(t, e, st)
	mayWrite = false
	if err := h.a.SyncOnce(ctx); err != nil || !h.status("apv-a").InSync {
		t.Errorf("observer of a synced device: err %v, status %+v", err, h.status("apv-a"))
	}
}
