package apv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"k8s.io/client-go/util/flowcontrol"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the loops.
const (
	DefaultSyncInterval = config.DefaultAPVSyncInterval
	DefaultScanInterval = config.DefaultAPVScanInterval
	// CertWarningWindow is how long before expiry a certificate raises a
	// CertificateExpiring event (the alert rules have their own thresholds).
	CertWarningWindow = 30 * 24 * time.Hour
	// CPUHighRatio raises a CPUHigh event; CPUNormalRatio the CPUNormal
	// that ends it.
	CPUHighRatio   = 0.9
	CPUNormalRatio = 0.8
	// minBackoff is the wait after a device's first failed sync or scan;
	// it doubles with each failure in a row up to the loop's interval.
	minBackoff = time.Second
)

// Options configures an Appliance.
type Options struct {
	// SyncInterval and ScanInterval default to 30s and 60s.
	SyncInterval time.Duration
	ScanInterval time.Duration
	// RequestTimeout bounds one cli_extend request (default 30s).
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// Registerer receives the edgeagent_apv_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// Events receives device state changes; nil logs them.
	Events EventSink
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// MayWrite, when set, is asked before each sync: while it returns
	// false the device is read and compared (status inSync) but nothing is
	// sent. With several agents configured for the same devices, the
	// caller makes it true on one of them (a Kubernetes Lease, say), so
	// they do not undo each other's changes while their views differ.
	MayWrite func() bool
	// EventsStatus, when set, reports the event sink beside the devices
	// (the CloudEvents sink, package cesink).
	EventsStatus func() EventsStatus
}

// DeviceStatus is one device's sync and scan state. The agent shows it in
// /status as status.APVDevice, whose fields it mirrors one for one (the
// conversion between the two is checked by the compiler).
type DeviceStatus struct {
	Name      string
	URL       string
	Up        bool
	HAState   string
	LastSync  time.Time
	LastScan  time.Time
	LastError string
	InSync    bool
	// HAUnit is the device's own unit in its HA configuration, as
	// identified (empty when HA is off or the unit is not known; the HA
	// state is then "unknown" rather than the peer's).
	HAUnit string
	// NormalizesDifferently lists the objects ("health ea_h_...") the
	// device prints back differently from how they were sent; they are not
	// rewritten until they or the LBRoutes change.
	NormalizesDifferently []string
}

// EventsStatus reports the scan's event sink (status.APVEvents in /status).
type EventsStatus struct {
	SinkURL   string
	Queued    int
	Delivered uint64
	Failed    uint64
	Dropped   uint64
	LastError string
}

// Appliance keeps a set of APV devices in line with the desired state and
// scans them. It implements the agent's Appliance interface: Reconcile only
// records the state and wakes the per-device loops that Run drives.
type Appliance struct {
	opts    Options
	log     *slog.Logger
	events  EventSink
	now     func() time.Time
	metrics *metrics
	devices []*device
	// syncBackoff and scanBackoff hold each device's retry delay (keyed
	// by device name): client-go's flowcontrol.Backoff, 1s doubling up to
	// the loop's interval, reset by a success.
	syncBackoff, scanBackoff *flowcontrol.Backoff

	mu       sync.RWMutex
	want     Config
	haveWant bool
}

// New builds an Appliance for the configured devices. File paths in cfg are
// used as given (the caller resolves them against the config file).
func New(cfg config.APV, o Options) (*Appliance, error) {
	if o.SyncInterval <= 0 {
		o.SyncInterval = cfg.SyncInterval.Duration
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.ScanInterval <= 0 {
		o.ScanInterval = cfg.ScanInterval.Duration
	}
	if o.ScanInterval <= 0 {
		o.ScanInterval = DefaultScanInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Appliance{opts: o, log: o.Logger.With("component", "apv"), now: o.Now, metrics: newMetrics(o.Registerer),
		syncBackoff: newBackoff(o.SyncInterval), scanBackoff: newBackoff(o.ScanInterval)}
	a.events = o.Events
	if a.events == nil {
		a.events = LogEvents{Logger: a.log}
	}
	seen := map[string]bool{}
	for i, d := range cfg.Devices {
		if d.Name == "" || seen[d.Name] {
			return nil, fmt.Errorf("apv.devices[%d].name: %q is empty or listed twice", i, d.Name)
		}
		seen[d.Name] = true
		cc := ClientConfig{URL: d.URL, UsernameFile: d.UsernameFile, PasswordFile: d.PasswordFile,
			CAFile: d.CAFile, InsecureSkipVerify: d.InsecureSkipVerify, ServerName: d.ServerName,
			PinnedCertSHA256: d.PinnedCertSHA256, Timeout: o.RequestTimeout}
		c, err := NewClient(cc)
		if err != nil {
			return nil, fmt.Errorf("apv.devices[%d] (%s): %w", i, d.Name, err)
		}
		scan := c
		if d.ScanUsernameFile != "" {
			cc.UsernameFile, cc.PasswordFile = d.ScanUsernameFile, d.ScanPasswordFile
			if scan, err = NewClient(cc); err != nil {
				return nil, fmt.Errorf("apv.devices[%d] (%s): %w", i, d.Name, err)
			}
		}
		host := ""
		if u, err := url.Parse(d.URL); err == nil {
			host = u.Hostname()
		}
		dev := &device{name: d.Name, url: d.URL, client: c, scanClient: scan, haUnit: d.HAUnit, urlHost: host, kick: make(chan struct{}, 1)}
		dev.st = DeviceStatus{Name: d.Name, URL: d.URL}
		a.devices = append(a.devices, dev)
		a.metrics.up.WithLabelValues(d.Name).Set(0)
		a.metrics.inSync.WithLabelValues(d.Name).Set(0)
	}
	return a, nil
}

// Reconcile records the desired state and wakes every device's sync loop;
// it never waits for a device. Virtual services that cannot be sent safely
// are refused (left out) and named in the error; the rest are synced.
func (a *Appliance) Reconcile(_ context.Context, s model.State) error {
	want, err := Render(s)
	a.mu.Lock()
	a.want, a.haveWant = want, true
	a.mu.Unlock()
	a.Kick()
	return err
}

// Kick wakes every device's sync loop without waiting for it: for a change
// that is not in the desired state, such as MayWrite turning true.
func (a *Appliance) Kick() {
	for _, d := range a.devices {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

func (a *Appliance) desired() (Config, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.want, a.haveWant
}

// Status reports every device's sync and scan state.
func (a *Appliance) Status() []DeviceStatus {
	out := make([]DeviceStatus, 0, len(a.devices))
	for _, d := range a.devices {
		d.mu.Lock()
		out = append(out, d.st)
		d.mu.Unlock()
	}
	return out
}

// EventsStatus reports the CloudEvents sink, nil when there is none.
func (a *Appliance) EventsStatus() *EventsStatus {
	if a.opts.EventsStatus == nil {
		return nil
	}
	st := a.opts.EventsStatus()
	return &st
}

// Run drives one sync loop and one scan loop per device until ctx ends.
// Devices never wait for each other.
func (a *Appliance) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, d := range a.devices {
		wg.Add(2)
		go func() { defer wg.Done(); a.syncLoop(ctx, d) }()
		go func() { defer wg.Done(); a.scanLoop(ctx, d) }()
	}
	wg.Wait()
	for _, d := range a.devices {
		d.client.Close()
		d.scanClient.Close()
	}
	return nil
}

// SyncOnce syncs every device now, concurrently, and returns their errors.
func (a *Appliance) SyncOnce(ctx context.Context) error {
	return a.each(ctx, a.syncDevice)
}

// ScanOnce scans every device now, concurrently.
func (a *Appliance) ScanOnce(ctx context.Context) error {
	return a.each(ctx, a.scanDevice)
}

func (a *Appliance) each(ctx context.Context, f func(context.Context, *device) error) error {
	errs := make([]error, len(a.devices))
	var wg sync.WaitGroup
	for i, d := range a.devices {
		wg.Go(func() {
			if err := f(ctx, d); err != nil {
				errs[i] = fmt.Errorf("%s: %w", d.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// newBackoff is the retry schedule of a loop running every limit: 1s, 2s,
// 4s, ... capped at limit (a limit under 1s: limit each time).
func newBackoff(limit time.Duration) *flowcontrol.Backoff {
	return flowcontrol.NewBackOff(min(minBackoff, limit), limit)
}

// retryIn records a failure of device d's loop and returns the wait before
// the next attempt.
func retryIn(b *flowcontrol.Backoff, d string) time.Duration {
	b.Next(d, time.Now())
	return b.Get(d)
}

func (a *Appliance) syncLoop(ctx context.Context, d *device) {
	t := time.NewTimer(a.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-t.C:
		}
		next := a.opts.SyncInterval
		if err := a.syncDevice(ctx, d); err != nil {
			if ctx.Err() != nil {
				return
			}
			next = retryIn(a.syncBackoff, d.name)
			a.log.Warn("apv sync failed", "device", d.name, "err", err, "retryIn", next)
		} else {
			a.syncBackoff.Reset(d.name)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

func (a *Appliance) scanLoop(ctx context.Context, d *device) {
	// The first scan comes right away, so metrics exist from the start.
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := a.opts.ScanInterval
		if err := a.scanDevice(ctx, d); err != nil {
			if ctx.Err() != nil {
				return
			}
			next = retryIn(a.scanBackoff, d.name)
			a.log.Debug("apv scan failed", "device", d.name, "err", err, "retryIn", next)
		} else {
			a.scanBackoff.Reset(d.name)
		}
		t.Reset(next)
	}
}
