package apv

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// HAStates are the values of the state label of edgeagent_apv_ha_state.
var HAStates = []string{"active", "standby", "init", "off", "unknown"}

type metrics struct {
	up             *prometheus.GaugeVec
	inSync         *prometheus.GaugeVec
	syncs          *prometheus.CounterVec
	commands       *prometheus.CounterVec
	lastSync       *prometheus.GaugeVec
	scans          *prometheus.CounterVec
	lastScan       *prometheus.GaugeVec
	haState        *prometheus.GaugeVec
	ifaceUp        *prometheus.GaugeVec
	haConfigured   *prometheus.GaugeVec
	haDomain       *prometheus.GaugeVec
	haUnitUp       *prometheus.GaugeVec
	cpu            *prometheus.GaugeVec
	normalized     *prometheus.GaugeVec
	enableRejected *prometheus.CounterVec
	certExpiry     *prometheus.GaugeVec
	virtualUp      *prometheus.GaugeVec
	virtualConns   *prometheus.GaugeVec
	realUp         *prometheus.GaugeVec
	realConns      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "edgeagent", Subsystem: "apv", Name: name, Help: help}, labels)
	}
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "edgeagent", Subsystem: "apv", Name: name, Help: help}, labels)
	}
	m := &metrics{
		up:             g("up", "1 when the last request to the APV's management API succeeded.", "device"),
		inSync:         g("in_sync", "1 when the device's SLB configuration matched the desired state at the last sync.", "device"),
		syncs:          c("syncs_total", "Sync attempts by result (ok, error).", "device", "result"),
		commands:       c("config_commands_total", "Configuration commands sent (write memory excluded).", "device"),
		lastSync:       g("last_sync_success_timestamp_seconds", "Unix time of the last successful sync.", "device"),
		scans:          c("scans_total", "Scan attempts by result (ok, error).", "device", "result"),
		lastScan:       g("last_scan_success_timestamp_seconds", "Unix time of the last successful scan.", "device"),
		haState:        g("ha_state", "HA state of the unit: 1 for the current state, 0 for the others.", "device", "state"),
		ifaceUp:        g("interface_up", "1 when the interface has carrier.", "device", "interface"),
		haConfigured:   g("ha_configured", "1 when the device's HA configuration lists HA units (whether HA is on or off).", "device"),
		haDomain:       g("ha_domain_info", "1 for the device's HA pair (domain: the sorted unit addresses, alike on both units) and its own unit.", "device", "domain", "unit"),
		haUnitUp:       g("ha_unit_up", "1 when `show ha status domain` reports the HA unit UP.", "device", "unit"),
		cpu:            g("cpu_utilization_ratio", "CPU utilisation (0-1).", "device"),
		normalized:     g("objects_normalized_differently", "Objects the device prints back differently from how they were sent; the agent stopped rewriting them.", "device"),
		enableRejected: c("enable_rejected_total", "Enable commands the device refused after creating the object.", "device"),
		certExpiry:     g("ssl_certificate_expiry_timestamp_seconds", "Unix time the SSL virtual host's certificate expires.", "device", "vhost"),
		virtualUp:      g("slb_virtual_up", "1 when the virtual service is up.", "device", "virtual"),
		virtualConns:   g("slb_virtual_connections", "Active connections of the virtual service.", "device", "virtual"),
		realUp:         g("slb_real_up", "1 when the APV's health check finds the real service up.", "device", "real"),
		realConns:      g("slb_real_connections", "Active connections of the real service.", "device", "real"),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.inSync, m.syncs, m.commands, m.lastSync, m.scans, m.lastScan, m.haState,
			m.haConfigured, m.haDomain, m.haUnitUp, m.ifaceUp, m.cpu, m.certExpiry, m.virtualUp, m.virtualConns,
			m.realUp, m.realConns, m.normalized, m.enableRejected)
	}
	return m
}

// setSeries sets one gauge series per key for a device and deletes the
// device's series for keys that disappeared since the last call.
func setSeries(v *prometheus.GaugeVec, device string, prev map[string]bool, cur map[string]float64) map[string]bool {
	next := make(map[string]bool, len(cur))
	for k, val := range cur {
		v.WithLabelValues(device, k).Set(val)
		next[k] = true
	}
	for k := range prev {
		if !next[k] {
			v.DeleteLabelValues(device, k)
		}
	}
	return next
}

// setSeries2 is setSeries for a vector with two labels after device; keys
// are the two values joined by NUL.
func setSeries2(v *prometheus.GaugeVec, device string, prev map[string]bool, cur map[string]float64) map[string]bool {
	next := make(map[string]bool, len(cur))
	for k, val := range cur {
		a, b, _ := strings.Cut(k, "\x00")
		v.WithLabelValues(device, a, b).Set(val)
		next[k] = true
	}
	for k := range prev {
		if !next[k] {
			a, b, _ := strings.Cut(k, "\x00")
			v.DeleteLabelValues(device, a, b)
		}
	}
	return next
}
