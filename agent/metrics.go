package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// routeMetrics exports, per accepted LBRoute, whether its VIP is advertised
// over BGP. It is computed at scrape time from the last reconcile, so the
// series of a route that left or was refused disappear with it, and the
// alert "VIP withdrawn while its LBRoute is accepted" needs no other
// bookkeeping.
type routeMetrics Agent

var vipAdvertisedDesc = prometheus.NewDesc("edgeagent_lbroute_vip_advertised",
	"1 when this node advertises the VIP of the accepted LBRoute over BGP, 0 when it does not (no healthy real, or not programmed); refused LBRoutes have no series.",
	[]string{"lbroute", "vip"}, nil)

// Describe implements prometheus.Collector.
func (m *routeMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- vipAdvertisedDesc }

// Collect implements prometheus.Collector.
func (m *routeMetrics) Collect(ch chan<- prometheus.Metric) {
	a := (*Agent)(m)
	if a.opts.Speaker == nil {
		return // no BGP: nothing is ever advertised, so nothing is withdrawn
	}
	for _, rep := range a.routeReports() {
		if !rep.Result.Accepted || len(rep.Result.Services) == 0 {
			continue
		}
		v := 0.0
		if rep.Advertised {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(vipAdvertisedDesc, prometheus.GaugeValue, v,
			rep.Result.Key(), rep.Result.Services[0].VIP.String())
	}
}
