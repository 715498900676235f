// Package dataplane programs the node's kernel: VIP addresses on the VIP
// interface (netlink), real-server load balancing (iptables NAT chains
// prefixed EDGE-), the forwarding sysctls, and the routes BGP learns
// (RouteTable). Everything it creates is marked as the agent's (interface
// name, chain prefix, route protocol) so that a restarted agent adopts it and
// cleanup removes exactly it.
//
// The Dataplane keeps the VIP interface and its addresses, the sysctls,
// which steps fail, status, metrics and the learned routes; a rules backend
// (Rules: iptables today) programs the load balancing. Every kernel access
// goes through a narrow interface (netlink.go, iptablesTools, sysctlIO,
// ruleChecker), so the failure paths are unit-tested on fakes
// (fake_test.go) and the behaviour against the kernel (kernel_test.go).
//
// Files:
//   - dataplane.go: Dataplane (agent.Dataplane) and the steps of a sync;
//     status.go: its Status and the failing-steps bookkeeping; metrics.go.
//   - rules.go: the Rules interface a rules backend implements.
//   - iptrules.go: the iptables backend (plan, apply per family,
//     settling what is programmed, cleanup).
//   - render.go, desired.go: the rules as a pure function of the desired
//     services (Render, golden-tested), kept incrementally between syncs.
//   - iptables.go: the iptables tools (iptables-save, one iptables-restore
//     --noflush per family and sync), diffing, the cleanup script.
//     iptmode.go: nft or legacy. iptcheck.go: go-iptables, for the version
//     and a single-rule check of the chosen backend.
//   - vip.go: the VIP interface (dummy, else a port-less bridge) and its
//     addresses. sysctl.go: forwarding. conntrack.go: UDP flows of reals that
//     left. routes.go: the route table for BGP. netlink.go: the netlink seams.
//
// Policies: rr and wrr are an nth cascade (an exact cycle; wrr over weight
// slots interleaved smoothly), random a cascade of statistic random rules
// with cumulative probabilities, sh the cluster match (jhash of the client
// address, does not touch the packet mark). Services without an eligible
// real are rejected in filter EDGE-INPUT (TCP reset, ICMP port unreachable).
package dataplane
