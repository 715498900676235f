package dataplane

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	duration prometheus.Histogram
	errors   prometheus.Counter
	services prometheus.Gauge
	rules    prometheus.Gauge
	failing  *prometheus.GaugeVec
	mode     *prometheus.GaugeVec
	backend  *prometheus.GaugeVec
	warnings prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, steps []string) metrics {
	m := metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgeagent_dataplane_sync_duration_seconds",
			Help:    "Time one dataplane sync (addresses, iptables-restore, conntrack) took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_dataplane_sync_errors_total",
			Help: "Dataplane syncs that returned an error.",
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_virtual_services",
			Help: "Virtual services programmed into the kernel.",
		}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_rules",
			Help: "Rules the rules backend holds in the kernel: iptables rules in the agent's EDGE- chains (both families), or the elements of the nftables table's sets and maps.",
		}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_step_failing",
			Help: "1 while the step of the dataplane sync (interface, addresses, sysctl, iptables-ipv4, iptables-ipv6, nftables) fails; /status says why.",
		}, []string{"step"}),
		mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_iptables_mode",
			Help: "1 for the iptables backend (nft or legacy) the agent's rules go through.",
		}, []string{"mode"}),
		backend: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_backend",
			Help: "1 for the rules backend in use (dataplane.backend: iptables or nftables).",
		}, []string{"backend"}),
		warnings: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_dataplane_warnings",
			Help: "Conditions that keep load-balanced traffic from flowing which the agent does not fix (a foreign forward-hook chain with policy drop), or leftovers of the rules backend not in use; /status dataplane.warnings names them.",
		}),
	}
	for _, s := range steps {
		m.failing.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.errors, m.services, m.rules, m.failing, m.mode, m.backend, m.warnings)
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
