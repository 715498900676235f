package apv

import (
	"github.com/prometheus/client_golang/prometheus"
)

// HAStates are the values of the state label of edgeagent_apv_ha_state.
var HAStates = []string{"active", "standby", "init", "off", "unknown"}

type metrics struct {
	up           *prometheus.GaugeVec
	inSync       *prometheus.GaugeVec
	syncs        *prometheus.CounterVec
	commands     *prometheus.CounterVec
	lastSync     *prometheus.GaugeVec
	scans        *prometheus.CounterVec
	lastScan     *prometheus.GaugeVec
	haState      *prometheus.GaugeVec
	ifaceUp      *prometheus.GaugeVec
	cpu          *prometheus.GaugeVec
	memory       *prometheus.GaugeVec
	certExpiry   *prometheus.GaugeVec
	virtualUp    *prometheus.GaugeVec
	virtualConns *prometheus.GaugeVec
	realUp       *prometheus.GaugeVec
	realConns    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "edgeagent", Subsystem: "apv", Name: name, Help: help}, labels)
	}
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "edgeagent", Subsystem: "apv", Name: name, Help: help}, labels)
	}
	m := &metrics{
		up:           g("up", "1 when the last request to the APV's management API succeeded.", "device"),
		inSync:       g("in_sync", "1 when the device's SLB configuration matched the desired state at the last sync.", "device"),
		syncs:        c("syncs_total", "Sync attempts by result (ok, error).", "device", "result"),
		commands:     c("config_commands_total", "Configuration commands sent (write memory excluded).", "device"),
		lastSync:     g("last_sync_success_timestamp_seconds", "Unix time of the last successful sync.", "device"),
		scans:        c("scans_total", "Scan attempts by result (ok, error).", "device", "result"),
		lastScan:     g("last_scan_success_timestamp_seconds", "Unix time of the last successful scan.", "device"),
		haState:      g("ha_state", "HA state of the unit: 1 for the current state, 0 for the others.", "device", "state"),
		ifaceUp:      g("interface_up", "1 when the interface has carrier.", "device", "interface"),
		cpu:          g("cpu_utilization_ratio", "CPU utilisation (0-1).", "device"),
		memory:       g("memory_used_ratio", "Memory in use (0-1).", "device"),
		certExpiry:   g("ssl_certificate_expiry_timestamp_seconds", "Unix time the SSL virtual host's certificate expires.", "device", "vhost"),
		virtualUp:    g("slb_virtual_up", "1 when the virtual service is up.", "device", "virtual"),
		virtualConns: g("slb_virtual_connections", "Active connections of the virtual service.", "device", "virtual"),
		realUp:       g("slb_real_up", "1 when the APV's health check finds the real service up.", "device", "real"),
		realConns:    g("slb_real_connections", "Active connections of the real service.", "device", "real"),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.inSync, m.syncs, m.commands, m.lastSync, m.scans, m.lastScan, m.haState,
			m.ifaceUp, m.cpu, m.memory, m.certExpiry, m.virtualUp, m.virtualConns, m.realUp, m.realConns)
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
