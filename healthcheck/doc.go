// Package healthcheck decides which reals may take new connections and which
// VIPs may be announced. It probes reals actively (TCP connect or HTTP GET,
// from the node itself, so a probe takes the path traffic takes), turns the
// results into verdicts with rise/fall hysteresis, and damps VIP
// announcement changes so a flapping real cannot flap a BGP route. It
// programs nothing: the agent hands its verdicts to the dataplane and BGP
// reconcilers.
package healthcheck
