// Package dashboard builds the edgeagent Grafana dashboard with the Grafana
// Foundation SDK (typed builders for Grafana's own dashboard schema, so a
// panel or field the schema does not know is a compile error, not a JSON
// typo). `make generate` writes it to
// deploy/daemonset/monitoring/dashboards/edgeagent.json, which the kustomize
// monitoring overlay and the Helm chart ship as a ConfigMap for Grafana's
// dashboard sidecar; test/alerting runs every query against a real
// Prometheus scraping a real agent.
package dashboard

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// UID is the dashboard's stable identifier (links and provisioning keep
// working across versions).
const UID = "edgeagent-overview"

// sel is the label matcher every query carries: the scrape job the alert
// rules expect and the instances picked in the dashboard's variable.
const sel = `job="edgeagent", instance=~"$instance"`

// q is one PromQL query with its legend.
type q struct{ expr, legend string }

func query(x q) *prometheus.DataqueryBuilder {
	b := prometheus.NewDataqueryBuilder().Expr(x.expr).Datasource(datasource())
	if x.legend != "" {
		b = b.LegendFormat(x.legend)
	}
	return b
}

func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

// ids numbers the panels in order: Grafana keys panel state and links on
// the id, so it must be unique and stable.
type ids uint32

func (n *ids) next() uint32 { *n++; return uint32(*n) }

// series is a time series panel.
func (n *ids) series(title, desc, unit string, qs ...q) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Id(n.next()).Title(title).Description(desc).Unit(unit).
		Datasource(datasource()).Height(8).Span(12).FillOpacity(10)
	for _, x := range qs {
		p = p.WithTarget(query(x))
	}
	return p
}

// status is a stat panel that turns red at or below bad (for "1 = good"
// gauges) or at or above bad when high is true.
func (n *ids) status(title, desc, unit string, x q, bad float64, high bool) *stat.PanelBuilder {
	good, worse := "green", "red"
	steps := []dashboard.Threshold{{Color: worse}, {Value: cog.ToPtr(bad + 0.5), Color: good}}
	if high {
		steps = []dashboard.Threshold{{Color: good}, {Value: cog.ToPtr(bad), Color: worse}}
	}
	return stat.NewPanelBuilder().Id(n.next()).Title(title).Description(desc).Unit(unit).
		Datasource(datasource()).Height(5).Span(6).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		WithTarget(query(x).Instant())
}

// Build returns the dashboard. It is the classic dashboard model, which the
// SDK marks deprecated in favour of its v2 schema: v2 needs Grafana 12 or
// later, while classic JSON loads into every Grafana the kube-prometheus-stack
// sidecar feeds.
//
//lint:ignore SA1019 classic dashboard JSON on purpose (see above)
func Build() (dashboard.Dashboard, error) {
	var n ids
	row := func(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title).Id(n.next()) }
	//lint:ignore SA1019 classic dashboard JSON on purpose (see Build)
	b := dashboard.NewDashboardBuilder("edgeagent").
		Uid(UID).
		Description("BGP, virtual services, reconcile latency, apiserver connection, health checks and APV state of the edgeagent DaemonSet.").
		Tags([]string{"edgeagent", "bgp", "load-balancer", "apv"}).
		Editable().
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("instance").Label("Agent").
			Datasource(datasource()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(edgeagent_build_info{job="edgeagent"}, instance)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).AllValue(".*"))

	b = b.WithRow(row("Overview")).
		WithPanel(n.status("Agents up", "Agents Prometheus scrapes successfully.", "none",
			q{expr: `sum(up{` + sel + `})`}, 0, false)).
		WithPanel(n.status("BGP sessions down", "Sessions not established, over all selected agents.", "none",
			q{expr: `count(edgeagent_bgp_session_up{` + sel + `} == 0) or vector(0)`}, 1, true)).
		WithPanel(n.status("LBRoutes refused", "LBRoutes with Accepted=False (the same on every agent).", "none",
			q{expr: `max(edgeagent_lbroutes_rejected{` + sel + `})`}, 1, true)).
		WithPanel(n.status("VIPs withdrawn", "Accepted LBRoutes whose VIP an agent does not advertise.", "none",
			q{expr: `count(edgeagent_lbroute_vip_advertised{` + sel + `} == 0) or vector(0)`}, 1, true))

	b = b.WithRow(row("BGP")).
		WithPanel(n.series("BGP sessions", "1 while the session with the peer is established.", "none",
			q{`edgeagent_bgp_session_up{` + sel + `}`, "{{instance}} → {{peer}}"}).Min(0).Max(1)).
		WithPanel(n.series("Prefixes", "VIP prefixes advertised to each peer, prefixes received from it, learned routes in the kernel.", "none",
			q{`edgeagent_bgp_prefixes_advertised{` + sel + `}`, "advertised {{instance}} → {{peer}}"},
			q{`edgeagent_bgp_prefixes_received{` + sel + `}`, "received {{instance}} ← {{peer}}"},
			q{`edgeagent_bgp_learned_routes{` + sel + `}`, "learned {{instance}}"})).
		WithPanel(n.series("BGP UPDATE messages", "UPDATE messages per second, by peer and direction.", "ops",
			q{`sum by (instance, peer, direction) (rate(edgeagent_bgp_updates_total{` + sel + `}[$__rate_interval]))`, "{{instance}} {{peer}} {{direction}}"}))

	b = b.WithRow(row("Virtual services")).
		WithPanel(n.series("Virtual services", "In the desired state and programmed in the kernel.", "none",
			q{`edgeagent_virtual_services{` + sel + `}`, "desired {{instance}}"},
			q{`edgeagent_dataplane_virtual_services{` + sel + `}`, "programmed {{instance}}"})).
		WithPanel(n.series("Healthy reals", "Reals of each virtual service that take new connections.", "none",
			q{`edgeagent_virtual_service_healthy_reals{` + sel + `}`, "{{instance}} {{vs}}"}).Min(0)).
		WithPanel(n.series("Unhealthy reals", "Reals failing their health check, per virtual service.", "none",
			q{`sum by (instance, vs) (1 - edgeagent_real_server_up{` + sel + `})`, "{{instance}} {{vs}}"}).Min(0)).
		WithPanel(n.series("VIP advertised", "1 while the agent advertises the VIP of an accepted LBRoute.", "none",
			q{`edgeagent_lbroute_vip_advertised{` + sel + `}`, "{{instance}} {{lbroute}} {{vip}}"}).Min(0).Max(1))

	b = b.WithRow(row("Reconcile and dataplane")).
		WithPanel(n.series("Reconcile latency", "99th and 50th percentile of one reconcile of the whole desired state.", "s",
			q{`histogram_quantile(0.99, sum by (instance, le) (rate(edgeagent_reconcile_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, "p99 {{instance}}"},
			q{`histogram_quantile(0.5, sum by (instance, le) (rate(edgeagent_reconcile_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, "p50 {{instance}}"})).
		WithPanel(n.series("Dataplane sync latency", "99th percentile of one kernel sync (netlink + iptables-restore).", "s",
			q{`histogram_quantile(0.99, sum by (instance, le) (rate(edgeagent_dataplane_sync_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, "p99 {{instance}}"})).
		WithPanel(n.series("Reconciles and sync errors", "Reconciles per second by result; dataplane sync errors per second.", "ops",
			q{`sum by (instance, result) (rate(edgeagent_reconcile_total{` + sel + `}[$__rate_interval]))`, "reconcile {{result}} {{instance}}"},
			q{`rate(edgeagent_dataplane_sync_errors_total{` + sel + `}[$__rate_interval])`, "sync errors {{instance}}"})).
		WithPanel(n.series("Dataplane steps failing", "1 while a step of the kernel sync fails (interface, addresses, sysctl, iptables-ipv4, iptables-ipv6, nftables).", "none",
			q{`max by (instance, step) (edgeagent_dataplane_step_failing{` + sel + `})`, "{{instance}} {{step}}"}).Min(0).Max(1)).
		WithPanel(n.series("Rules, backends and warnings", "Rules (iptables) or set and map elements (nftables) the agent keeps; 1 for the rules backend and the iptables backend in use; dataplane warnings (/status dataplane.warnings).", "none",
			q{`edgeagent_dataplane_rules{` + sel + `}`, "rules {{instance}}"},
			q{`max by (instance, backend) (edgeagent_dataplane_backend{` + sel + `})`, "backend {{backend}} {{instance}}"},
			q{`max by (instance, mode) (edgeagent_dataplane_iptables_mode{` + sel + `})`, "iptables {{mode}} {{instance}}"},
			q{`edgeagent_dataplane_warnings{` + sel + `}`, "warnings {{instance}}"}))

	b = b.WithRow(row("Apiserver connection")).
		WithPanel(n.series("Connected / stale", "1 while the agent holds an apiserver connection; stale 1 while its view of the cluster may be out of date.", "none",
			q{`edgeagent_apiserver_connected{` + sel + `}`, "connected {{instance}}"},
			q{`edgeagent_apiserver_config_stale{` + sel + `}`, "stale {{instance}}"}).Min(0).Max(1)).
		WithPanel(n.series("Last watch event age", "Seconds since the last watch event or successful list.", "s",
			q{`edgeagent_apiserver_last_event_age_seconds{` + sel + `}`, "{{instance}}"})).
		WithPanel(n.series("Connection resets and dial failures", "Per second.", "ops",
			q{`rate(edgeagent_apiserver_connection_resets_total{` + sel + `}[$__rate_interval])`, "resets {{instance}}"},
			q{`rate(edgeagent_apiserver_dial_failures_total{` + sel + `}[$__rate_interval])`, "dial failures {{instance}}"})).
		WithPanel(n.series("Status writes", "LBRoute and EdgeNodeStatus status writes per second, by kind.", "ops",
			q{`sum by (instance, kind) (rate(edgeagent_status_writes_total{` + sel + `}[$__rate_interval]))`, "{{kind}} {{instance}}"}))

	b = b.WithRow(row("Health checks")).
		WithPanel(n.series("Probe targets and engine", "Distinct probe targets; 1 while the health-check engine runs.", "none",
			q{`edgeagent_healthcheck_targets{` + sel + `}`, "targets {{instance}}"},
			q{`edgeagent_healthcheck_engine_running{` + sel + `}`, "engine running {{instance}}"})).
		WithPanel(n.series("Probes per second", "By check type and result.", "ops",
			q{`sum by (instance, type, result) (rate(edgeagent_healthcheck_duration_seconds_count{` + sel + `}[$__rate_interval]))`, "{{instance}} {{type}} {{result}}"})).
		WithPanel(n.series("Probe latency", "99th percentile of one probe, by check type.", "s",
			q{`histogram_quantile(0.99, sum by (instance, type, le) (rate(edgeagent_healthcheck_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, "p99 {{instance}} {{type}}"}))

	// Every agent may scan the same device: device panels aggregate by
	// device, as the APV alert rules do.
	b = b.WithRow(row("APV")).
		WithPanel(n.series("APV reachable / in sync", "1 when an agent reaches the management API; 1 when the SLB configuration matches the LBRoutes.", "none",
			q{`max by (device) (edgeagent_apv_up{` + sel + `})`, "up {{device}}"},
			q{`max by (device) (edgeagent_apv_in_sync{` + sel + `})`, "in sync {{device}}"}).Min(0).Max(1)).
		WithPanel(n.series("APV HA state", "1 for the unit's current HA state.", "none",
			q{`max by (device, state) (edgeagent_apv_ha_state{` + sel + `})`, "{{device}} {{state}}"}).Min(0).Max(1)).
		WithPanel(n.series("Certificate expiry", "Time left until each SSL virtual host's certificate expires.", "s",
			q{`min by (device, vhost) (edgeagent_apv_ssl_certificate_expiry_timestamp_seconds{` + sel + `}) - time()`, "{{device}} {{vhost}}"})).
		WithPanel(n.series("APV real and virtual services", "Up by the APV's own health checks.", "none",
			q{`min by (device, real) (edgeagent_apv_slb_real_up{` + sel + `})`, "real {{device}} {{real}}"},
			q{`max by (device, virtual) (edgeagent_apv_slb_virtual_up{` + sel + `})`, "virtual {{device}} {{virtual}}"}).Min(0).Max(1)).
		WithPanel(n.series("APV scans", "Scans per second by result.", "ops",
			q{`sum by (device, result) (rate(edgeagent_apv_scans_total{` + sel + `}[$__rate_interval]))`, "{{device}} {{result}}"})).
		WithPanel(n.series("APV last successful scan", "Seconds since any agent last scanned the device successfully.", "s",
			q{`time() - max by (device) (edgeagent_apv_last_scan_success_timestamp_seconds{` + sel + `})`, "{{device}}"})).
		WithPanel(n.series("APV CPU", "CPU utilisation of the appliance.", "percentunit",
			q{`max by (device) (edgeagent_apv_cpu_utilization_ratio{` + sel + `})`, "{{device}}"}).Min(0).Max(1))

	b = b.WithRow(row("Agent process")).
		WithPanel(n.series("Memory", "Resident memory and Go heap in use.", "bytes",
			q{`process_resident_memory_bytes{` + sel + `}`, "RSS {{instance}}"},
			q{`go_memstats_heap_inuse_bytes{` + sel + `}`, "heap {{instance}}"})).
		WithPanel(n.series("CPU", "CPU seconds per second.", "percentunit",
			q{`rate(process_cpu_seconds_total{` + sel + `}[$__rate_interval])`, "{{instance}}"})).
		WithPanel(n.series("Version", "Agent version per instance (1 per running build).", "none",
			q{`edgeagent_build_info{` + sel + `}`, "{{instance}} {{version}}"}))

	d, err := b.Build()
	if err != nil {
		return d, fmt.Errorf("build dashboard: %w", err)
	}
	return d, nil
}

// JSON returns the dashboard as Grafana imports it, indented, with a
// trailing newline.
func JSON() ([]byte, error) {
	d, err := Build()
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal dashboard: %w", err)
	}
	return append(out, '\n'), nil
}
