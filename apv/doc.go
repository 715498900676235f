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
//   - Scan (scanLB): per device, read HA state (the local unit's, never the
//     peer's), interface links, CPU use, SSL certificate expiry and SLB
//     service status into Prometheus metrics, and turn each state change
//     into an event (EventSink; package apv/cesink sends them as
//     CloudEvents).
//
// A device may print an object back differently from how it was sent;
// such objects are marked after one write and not rewritten in a loop
// (readback.go).
//
// docs/apv.md gives the public source of every command form and parsed
// output (fixtures in testdata/public), or says there is none, and lists
// what still needs a real device.
package apv
