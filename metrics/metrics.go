// Package metrics builds the agent's Prometheus registry: Go and process
// collectors plus edgeagent_build_info. Each component registers its own
// metrics on it; nothing uses the global registry, so tests can build as
// many agents as they like in one process.
package metrics

import (
	"net/http"
	"runtime"

	"github.com/arraynetworks/edgeagent/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the standard collectors and build info.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "edgeagent_build_info",
		Help: "Build information of the running agent; always 1.",
	}, []string{"version", "goversion"})
	bi.WithLabelValues(version.String(), runtime.Version()).Set(1)
	r.MustRegister(bi)
	return r
}

// Handler serves the registry in the Prometheus exposition format.
func Handler(r *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(r, promhttp.HandlerOpts{Registry: r})
}
