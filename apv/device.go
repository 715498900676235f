package apv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// device is one APV and what the agent knows about it.
type device struct {
	name   string
	url    string
	client *Client
	// scanClient reads for scans: the separate read-only account when one
	// is configured, else client.
	scanClient *Client
	haUnit     string
	urlHost    string
	kick       chan struct{}

	syncMu sync.Mutex // one sync at a time
	// unsaved is set once a configuration command succeeded and cleared by
	// a successful write memory, so a sync that failed between the two
	// saves on the next attempt even when nothing is left to change.
	unsaved     bool
	syncFailing bool
	// marks are the objects the device prints back differently from how
	// they were sent (readback.go); only the sync goroutine touches them.
	marks      map[Key]mark
	unreadable int // lines ParseConfig could not read at the last read

	scanMu   sync.Mutex // one scan at a time
	prevScan *ScanResult
	certs    map[string]string // vhost → ok, expiring, expired
	cpuHigh  bool
	series   map[string]map[string]bool

	mu      sync.Mutex // guards st, upKnown
	st      DeviceStatus
	upKnown bool
}

// event hands one state change to the event sink.
func (a *Appliance) event(device, kind, reason, object, message string) {
	a.events.Event(Event{Device: device, Type: kind, Reason: reason, Object: object, Message: message, Time: a.now()})
}

// setUp records reachability and raises an event when it changes.
func (a *Appliance) setUp(d *device, up bool, cause error) {
	d.mu.Lock()
	was, known := d.st.Up, d.upKnown
	d.st.Up, d.upKnown = up, true
	d.mu.Unlock()
	if up {
		a.metrics.up.WithLabelValues(d.name).Set(1)
	} else {
		a.metrics.up.WithLabelValues(d.name).Set(0)
	}
	switch {
	case !up && (was || !known):
		a.event(d.name, Warning, ReasonDeviceUnreachable, "", fmt.Sprintf("APV %s is unreachable: %v", d.name, cause))
	case up && known && !was:
		a.event(d.name, Normal, ReasonDeviceReachable, "", fmt.Sprintf("APV %s is reachable again", d.name))
	}
}

func (a *Appliance) syncDevice(ctx context.Context, d *device) error {
	want, ok := a.desired()
	if !ok {
		// Until the agent has a desired state it touches nothing: a
		// restarted agent adopts what it finds instead of flushing it.
		return nil
	}
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	sent, inSync, err := a.doSync(ctx, d, want)
	now := a.now()
	a.metrics.commands.WithLabelValues(d.name).Add(float64(sent))
	d.mu.Lock()
	d.st.InSync = inSync
	if err != nil {
		d.st.LastError = err.Error()
	} else {
		d.st.LastError = ""
		d.st.LastSync = now
	}
	d.mu.Unlock()
	a.metrics.inSync.WithLabelValues(d.name).Set(b2f(inSync))
	if err != nil {
		a.metrics.syncs.WithLabelValues(d.name, "error").Inc()
		if Transport(err) {
			a.setUp(d, false, err)
		}
		if !d.syncFailing {
			d.syncFailing = true
			a.event(d.name, Warning, ReasonSyncFailed, "", fmt.Sprintf("sync of APV %s failed: %v", d.name, err))
		}
		return err
	}
	a.metrics.syncs.WithLabelValues(d.name, "ok").Inc()
	a.metrics.lastSync.WithLabelValues(d.name).Set(float64(now.Unix()))
	a.setUp(d, true, nil)
	if sent > 0 || d.syncFailing {
		a.event(d.name, Normal, ReasonSynced, "", fmt.Sprintf("APV %s synced: %d configuration commands applied and saved", d.name, sent))
	}
	d.syncFailing = false
	return nil
}

// doSync reads the device, sends the difference and saves. It returns the
// number of configuration commands that succeeded and whether the device
// matched the desired state afterwards (objects it prints back differently,
// see readback.go, count as matching once they are marked).
func (a *Appliance) doSync(ctx context.Context, d *device, want Config) (sent int, inSync bool, err error) {
	raw, cur, err := a.readConfig(ctx, d)
	if err != nil {
		return 0, false, err
	}
	cur, d.marks = applyMarks(d.marks, raw, cur, want)
	a.publishMarks(d)
	cmds := Diff(cur, want)
	if len(cmds) == 0 && !d.unsaved {
		return 0, true, nil
	}
	if a.opts.MayWrite != nil && !a.opts.MayWrite() {
		a.log.Debug("apv differs but this agent may not write", "device", d.name, "commands", len(cmds))
		return 0, len(cmds) == 0, nil
	}
	if len(cmds) > 0 {
		a.log.Info("apv applying changes", "device", d.name, "commands", len(cmds))
	}
	for i, c := range cmds {
		if _, err := d.client.Run(ctx, c); err != nil {
			var ce *CLIError
			if isEnableLine(c) && errors.As(err, &ce) {
				// The object exists; a device without this command (or
				// with the object enabled already, if it says so loudly)
				// still serves it. Counted and logged, not fatal.
				a.metrics.enableRejected.WithLabelValues(d.name).Inc()
				a.log.Warn("apv refused an enable command; the object was created", "device", d.name, "command", cmdWord(c), "err", err)
				continue
			}
			return sent, false, fmt.Errorf("command %d of %d: %w", i+1, len(cmds), err)
		}
		sent++
		d.unsaved = true
	}
	if _, err := d.client.Run(ctx, WriteMemory); err != nil {
		return sent, false, fmt.Errorf("write memory: %w", err)
	}
	d.unsaved = false
	// Read back: a command the device accepted without doing what it says,
	// or an object it prints differently, shows up here.
	rawAfter, after, err := a.readConfig(ctx, d)
	if err != nil {
		return sent, false, err
	}
	after, d.marks = applyMarks(d.marks, rawAfter, after, want)
	if fresh := markDiffering(rawAfter, after, want); len(fresh) > 0 {
		if d.marks == nil {
			d.marks = map[Key]mark{}
		}
		keys := slices.SortedFunc(maps.Keys(fresh), func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			d.marks[k] = fresh[k]
			a.log.Warn("apv object reads back differently; not rewriting it", "device", d.name, "object", k.String(),
				"sent", oneLine(fresh[k].want), "readBack", oneLine(orNothing(fresh[k].device)))
		}
		// One event per sync, however many objects: a device that prints
		// nothing back would otherwise raise one per object.
		first := fresh[keys[0]]
		more := ""
		if len(keys) > 1 {
			more = fmt.Sprintf(" (and %d more: see /status apv[].normalizesDifferently)", len(keys)-1)
		}
		a.event(d.name, Warning, ReasonNormalizesDifferently, keys[0].String(), fmt.Sprintf(
			"APV %s prints %s back differently from how it was sent%s; not rewritten until it or the LBRoutes change. Sent: %s. Read back: %s",
			d.name, keys[0], more, oneLine(first.want), oneLine(orNothing(first.device))))
	}
	a.publishMarks(d)
	return sent, true, nil
}

func orNothing(s string) string {
	if s == "" {
		return "(nothing)"
	}
	return s
}

// publishMarks copies the marked objects into status and the metric.
func (a *Appliance) publishMarks(d *device) {
	names := make([]string, 0, len(d.marks))
	for k := range d.marks {
		names = append(names, k.String())
	}
	slices.Sort(names)
	a.metrics.normalized.WithLabelValues(d.name).Set(float64(len(names)))
	d.mu.Lock()
	d.st.NormalizesDifferently = names
	d.mu.Unlock()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " | ") }

func (a *Appliance) readConfig(ctx context.Context, d *device) (string, Config, error) {
	out, err := d.client.Run(ctx, cmdShowRunning)
	if err != nil {
		return "", Config{}, fmt.Errorf("read configuration: %w", err)
	}
	cur, bad := ParseConfig(out)
	if bad > 0 && bad != d.unreadable {
		a.log.Warn("apv configuration lines not understood", "device", d.name, "lines", bad)
	}
	d.unreadable = bad
	return out, cur, nil
}

func (a *Appliance) scanDevice(ctx context.Context, d *device) error {
	d.scanMu.Lock()
	defer d.scanMu.Unlock()
	res, err := Scan(ctx, d.scanClient, ScanTarget{HAUnit: d.haUnit, URLHost: d.urlHost})
	if err != nil {
		a.metrics.scans.WithLabelValues(d.name, "error").Inc()
		a.setUp(d, false, err)
		return err
	}
	now := a.now()
	a.metrics.scans.WithLabelValues(d.name, "ok").Inc()
	a.metrics.lastScan.WithLabelValues(d.name).Set(float64(now.Unix()))
	a.setUp(d, true, nil)
	a.exportScan(d, res)
	a.scanEvents(d, res, now)
	d.prevScan = &res
	d.mu.Lock()
	d.st.HAState, d.st.HAUnit = res.HAState, res.HAUnit
	d.st.LastScan = now
	d.mu.Unlock()
	return nil
}

func (a *Appliance) exportScan(d *device, res ScanResult) {
	m := a.metrics
	for _, s := range HAStates {
		m.haState.WithLabelValues(d.name, s).Set(b2f(s == res.HAState))
	}
	m.haConfigured.WithLabelValues(d.name).Set(b2f(res.HAConfigured))
	if d.series == nil {
		d.series = map[string]map[string]bool{}
	}
	dom := map[string]float64{}
	if res.HADomain != "" {
		dom[res.HADomain+"\x00"+res.HAUnit] = 1
	}
	d.series["haDomain"] = setSeries2(m.haDomain, d.name, d.series["haDomain"], dom)
	units := map[string]float64{}
	for u, up := range res.HAUnitsUp {
		units[u] = b2f(up)
	}
	d.series["haUnit"] = setSeries(m.haUnitUp, d.name, d.series["haUnit"], units)
	ifaces := map[string]float64{}
	for n, up := range res.Interfaces {
		ifaces[n] = b2f(up)
	}
	d.series["iface"] = setSeries(m.ifaceUp, d.name, d.series["iface"], ifaces)
	certs := map[string]float64{}
	for vh, t := range res.Certs {
		certs[vh] = float64(t.Unix())
	}
	d.series["cert"] = setSeries(m.certExpiry, d.name, d.series["cert"], certs)
	ru, rc := map[string]float64{}, map[string]float64{}
	for n, s := range res.Reals {
		ru[n] = b2f(s.Up)
		if s.HasConns {
			rc[n] = s.Connections
		}
	}
	d.series["realUp"] = setSeries(m.realUp, d.name, d.series["realUp"], ru)
	d.series["realConns"] = setSeries(m.realConns, d.name, d.series["realConns"], rc)
	vu, vc := map[string]float64{}, map[string]float64{}
	for n, s := range res.Virtuals {
		vu[n] = b2f(s.Up)
		if s.HasConns {
			vc[n] = s.Connections
		}
	}
	d.series["virtualUp"] = setSeries(m.virtualUp, d.name, d.series["virtualUp"], vu)
	d.series["virtualConns"] = setSeries(m.virtualConns, d.name, d.series["virtualConns"], vc)
	if res.CPU >= 0 {
		m.cpu.WithLabelValues(d.name).Set(res.CPU)
	} else {
		m.cpu.DeleteLabelValues(d.name)
	}
}

// scanEvents turns differences from the previous scan into events. On the
// first scan, only bad states raise one (a link already down, a
// certificate already close to expiry), so a restart does not replay
// history.
func (a *Appliance) scanEvents(d *device, res ScanResult, now time.Time) {
	prev := d.prevScan
	if prev != nil && prev.HAState != res.HAState {
		a.event(d.name, Warning, ReasonHAStateChanged, res.HAUnit, fmt.Sprintf("APV %s HA state changed from %s to %s", d.name, prev.HAState, res.HAState))
	}
	var prevIf, prevReal map[string]bool
	if prev != nil {
		prevIf = prev.Interfaces
		prevReal = map[string]bool{}
		for n, s := range prev.Reals {
			prevReal[n] = s.Up
		}
	}
	for _, n := range slices.Sorted(maps.Keys(res.Interfaces)) {
		up := res.Interfaces[n]
		was, known := prevIf[n]
		switch {
		case !up && (!known || was):
			a.event(d.name, Warning, ReasonLinkDown, n, fmt.Sprintf("APV %s interface %s has no carrier", d.name, n))
		case up && known && !was:
			a.event(d.name, Normal, ReasonLinkUp, n, fmt.Sprintf("APV %s interface %s is up", d.name, n))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(res.Reals)) {
		up := res.Reals[n].Up
		was, known := prevReal[n]
		switch {
		case !up && (!known || was):
			a.event(d.name, Warning, ReasonRealDown, n, fmt.Sprintf("APV %s reports real service %s down", d.name, n))
		case up && known && !was:
			a.event(d.name, Normal, ReasonRealUp, n, fmt.Sprintf("APV %s reports real service %s up", d.name, n))
		}
	}
	var prevVirt map[string]bool
	if prev != nil {
		prevVirt = map[string]bool{}
		for n, s := range prev.Virtuals {
			prevVirt[n] = s.Up
		}
	}
	for _, n := range slices.Sorted(maps.Keys(res.Virtuals)) {
		up := res.Virtuals[n].Up
		was, known := prevVirt[n]
		switch {
		case !up && (!known || was):
			a.event(d.name, Warning, ReasonVirtualDown, n, fmt.Sprintf("APV %s reports virtual service %s down", d.name, n))
		case up && known && !was:
			a.event(d.name, Normal, ReasonVirtualUp, n, fmt.Sprintf("APV %s reports virtual service %s up", d.name, n))
		}
	}
	// CPU: a finding when it crosses CPUHighRatio, over again only once it
	// has come back under CPUNormalRatio (no event storm around the line).
	switch {
	case res.CPU >= CPUHighRatio && !d.cpuHigh:
		d.cpuHigh = true
		a.event(d.name, Warning, ReasonCPUHigh, "", fmt.Sprintf("APV %s CPU utilisation is %.0f%%", d.name, res.CPU*100))
	case res.CPU >= 0 && res.CPU < CPUNormalRatio && d.cpuHigh:
		d.cpuHigh = false
		a.event(d.name, Normal, ReasonCPUNormal, "", fmt.Sprintf("APV %s CPU utilisation is back to %.0f%%", d.name, res.CPU*100))
	}
	if d.certs == nil {
		d.certs = map[string]string{}
	}
	for _, vh := range slices.Sorted(maps.Keys(res.Certs)) {
		t := res.Certs[vh]
		state := "ok"
		switch {
		case !t.After(now):
			state = "expired"
		case t.Sub(now) < CertWarningWindow:
			state = "expiring"
		}
		was := d.certs[vh]
		d.certs[vh] = state
		if state == was {
			continue
		}
		days := int(t.Sub(now).Hours() / 24)
		switch state {
		case "expired":
			a.event(d.name, Warning, ReasonCertificateExpired, vh, fmt.Sprintf("APV %s SSL host %s: certificate expired at %s", d.name, vh, t.UTC().Format(time.RFC3339)))
		case "expiring":
			a.event(d.name, Warning, ReasonCertificateExpiring, vh, fmt.Sprintf("APV %s SSL host %s: certificate expires in %d days (%s)", d.name, vh, days, t.UTC().Format(time.RFC3339)))
		case "ok":
			if was != "" {
				a.event(d.name, Normal, ReasonCertificateRenewed, vh, fmt.Sprintf("APV %s SSL host %s: certificate now valid until %s", d.name, vh, t.UTC().Format(time.RFC3339)))
			}
		}
	}
	for vh := range d.certs {
		if _, ok := res.Certs[vh]; !ok {
			delete(d.certs, vh)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
