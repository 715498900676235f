// Package dataplane programs the node's kernel: VIP addresses on the VIP
// interface (netlink), real-server load balancing (iptables NAT chains
// prefixed EDGE-), the forwarding sysctls, and the routes BGP learns
// (RouteTable). Everything it creates is marked as the agent's (interface
// name, chain prefix, route protocol) so that a restarted agent adopts it and
// cleanup removes exactly it.
//
// Files:
//   - render.go, desired.go: the rules as a pure function of the desired
//     services (Render, golden-tested), kept incrementally between syncs.
//   - iptables.go: reading iptables-save, diffing, one iptables-restore
//     --noflush per family and sync, the cleanup script.
//   - vip.go: the VIP interface (dummy, else a port-less bridge) and its
//     addresses. sysctl.go: forwarding. conntrack.go: UDP flows of reals that
//     left. routes.go: the route table for BGP.
//   - dataplane.go: Dataplane, the agent.Dataplane implementation, metrics,
//     Cleanup.
//
// Policies: rr and wrr are an nth cascade (an exact cycle; wrr over weight
// slots interleaved smoothly), random a cascade of statistic random rules
// with cumulative probabilities, sh the cluster match (jhash of the client
// address, does not touch the packet mark). Services without an eligible
// real are rejected in filter EDGE-INPUT (TCP reset, ICMP port unreachable).
package dataplane
