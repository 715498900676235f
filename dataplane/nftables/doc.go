// Package nftables is the dataplane's nftables backend: it programs virtual
// services into one table of the agent's own, `table inet edgeagent`, in a
// data-only layout. The table's chains and rules are fixed (plus one rule
// per selector — a kind of slot choice and a slot count — in use); VIP
// dispatch and real selection are set and map elements. Adding, removing or
// re-weighting a real, or adding or removing a service, is an element
// change, which the kernel applies without re-validating any chain graph:
// a change of one service among 10,000 costs well under a millisecond in
// the kernel (docs/benchmarks/dataplane.md), where the iptables backend's
// costs ~100 ms.
//
// It writes through netlink (github.com/google/nftables), one batch — one
// kernel transaction — per sync; the choice of netlink over the nft CLI was
// made by measurement (docs/dataplane.md).
//
// Files:
//   - layout.go: the table, chains, rules and element encodings.
//   - render.go: a service's selector and slot table (pure).
//   - desired.go: the wanted elements, kept incrementally between syncs.
//   - kernel.go: reading the table, writing batches.
//   - backend.go: Backend (adopt, diff, write, commit; Resync, Cleanup).
//   - conntrack.go: UDP flows of reals that left.
package nftables
