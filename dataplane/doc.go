// Package dataplane programs the node's kernel: VIP addresses on the VIP
// interface (netlink), real-server load balancing (iptables NAT chains
// prefixed EDGE-), and the routes BGP learns (RouteTable). Everything it
// creates is marked as the agent's (interface name, chain prefix, route
// protocol) so that a restarted agent adopts it and cleanup removes exactly it.
package dataplane
