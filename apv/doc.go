// Package apv drives Array Networks APV appliances the way Array's public
// OpenStack LBaaS agent does: one ArrayOS CLI line per
// POST https://<mgmt>:9997/rest/apv/cli_extend with the JSON body
// {"cmd": "<line>", "timeout": N} and HTTP basic auth; the CLI output comes
// back as {"contents": "..."}.
//
// The package has three jobs and knows nothing about Kubernetes:
//
//   - Render: the desired state (model.State) becomes a device
//     configuration (Config) of SLB objects whose names all start with
//     OwnerPrefix. Render and Diff are pure functions with golden tests.
//   - Sync: per device, read the running configuration back, parse the
//     objects the agent owns, diff against the desired Config and send only
//     the difference in dependency order, then `write memory`. Devices are
//     synced independently, with retries that back off.
//   - Scan (scanLB): per device, read HA state, interface links, CPU and
//     memory use, SSL certificate expiry and SLB service status into
//     Prometheus metrics, and turn each state change into an event
//     (EventSink).
//
// docs/apv.md lists which command forms and outputs come from public Array
// material and which are assumptions that still need a real device.
package apv
