package bgp

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics is a collector that reads the neighbors at scrape time, so the
// figures are never staler than the scrape and a removed peer's series
// disappear with it.
type metrics struct {
	s                                          *Speaker
	up, advertised, received, updates, learned *prometheus.Desc

	mu sync.Mutex
	// GoBGP's message counters restart with each session; these keep
	// edgeagent_bgp_updates_total monotonic across resets.
	last  map[string][2]uint64
	total map[string][2]float64
}

func newMetrics(s *Speaker) *metrics {
	return &metrics{
		s: s,
		up: prometheus.NewDesc("edgeagent_bgp_session_up",
			"1 when the BGP session with the peer is established.", []string{"peer"}, nil),
		advertised: prometheus.NewDesc("edgeagent_bgp_prefixes_advertised",
			"VIP prefixes advertised to the peer.", []string{"peer"}, nil),
		received: prometheus.NewDesc("edgeagent_bgp_prefixes_received",
			"Prefixes received from the peer (before importCIDRs).", []string{"peer"}, nil),
		updates: prometheus.NewDesc("edgeagent_bgp_updates_total",
			"BGP UPDATE messages exchanged with the peer.", []string{"peer", "direction"}, nil),
		learned: prometheus.NewDesc("edgeagent_bgp_learned_routes",
			"Learned routes installed in the kernel.", nil, nil),
		last:  map[string][2]uint64{},
		total: map[string][2]float64{},
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.up
	ch <- m.advertised
	ch <- m.received
	ch <- m.updates
	ch <- m.learned
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var neighbors []Neighbor
	if v, ok := m.s.view(ctx); ok {
		neighbors = v.neighbors()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, n := range neighbors {
		peer := n.Address.String()
		seen[peer] = true
		up := 0.0
		if n.State == "established" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, up, peer)
		ch <- prometheus.MustNewConstMetric(m.advertised, prometheus.GaugeValue, float64(n.Advertised), peer)
		ch <- prometheus.MustNewConstMetric(m.received, prometheus.GaugeValue, float64(n.Received), peer)
		cur := [2]uint64{n.UpdatesReceived, n.UpdatesSent}
		last, tot := m.last[peer], m.total[peer]
		for i := range cur {
			if cur[i] >= last[i] {
				tot[i] += float64(cur[i] - last[i])
			} else {
				tot[i] += float64(cur[i])
			}
		}
		m.last[peer], m.total[peer] = cur, tot
		ch <- prometheus.MustNewConstMetric(m.updates, prometheus.CounterValue, tot[0], peer, "received")
		ch <- prometheus.MustNewConstMetric(m.updates, prometheus.CounterValue, tot[1], peer, "sent")
	}
	for a := range m.last {
		if !seen[a] {
			delete(m.last, a)
			delete(m.total, a)
		}
	}
	if m.s.imp != nil {
		ch <- prometheus.MustNewConstMetric(m.learned, prometheus.GaugeValue, float64(len(m.s.imp.learned())))
	}
}
