package dataplane

import (
	"context"
	"net/netip"

	"github.com/arraynetworks/edgeagent/model"
)

// Rules is a rules backend: it programs the load balancing of the virtual
// services — DNAT to the eligible reals, masquerade, reject when a service
// has no eligible real, and the deletion of conntrack entries of UDP reals
// that left — into kernel objects of its own. The iptables backend (EDGE-
// chains through iptables-restore) is the default; Options.Rules plugs in
// another.
//
// The Dataplane drives it and keeps everything else: the VIP interface and
// its addresses, the forwarding sysctls, which steps fail and since when,
// status, metrics and the learned routes (RouteTable). A sync is
//
//	Plan → (VIP addresses go on ‖ Apply) → VIP addresses come off
//
// so addresses go on while the rules go in, and come off only once a sync
// whose every rules step succeeded no longer uses them.
//
// The Dataplane calls Plan, Apply, Resync and Cleanup one at a time (under
// its lock), and Rejected and Status only right after Apply, so those need
// no lock of their own. Programmed may be called at any time, also during
// Apply, and must not wait for it: /readyz calls it.
type Rules interface {
	// Steps names the steps whose outcomes Plan and Apply report, in the
	// order /status lists them (after the Dataplane's interface, addresses
	// and sysctl). Each appears in /status and in
	// edgeagent_dataplane_step_failing{step}.
	Steps() []string
	// Plan brings the backend's desired state to services. It may read
	// the backend's kernel objects (at the first sync, after Resync or a
	// failed write) but writes nothing. A service that cannot be
	// programmed is left out and reported by Rejected; it is not a step
	// failure.
	Plan(ctx context.Context, services []model.VirtualService) RulesPlan
	// Apply writes what the last Plan decided (nothing when the kernel
	// already holds it), deletes conntrack entries of UDP reals that left,
	// and reports the outcome of each step it attempted. A step that
	// fails leaves its previous rules in force; the next Plan reads the
	// kernel again where it must.
	Apply(ctx context.Context) map[string]error
	// Resync makes the next Plan read the backend's kernel objects again
	// and repair whatever differs, instead of trusting what it wrote.
	Resync()
	// Programmed reports the keys of the services whose rules are in the
	// kernel.
	Programmed() map[string]bool
	// Rejected returns the services left out, with the reason.
	Rejected() map[string]error
	// Status describes the backend.
	Status() RulesStatus
	// Cleanup removes every kernel object the backend creates and nothing
	// else; running it again finds nothing to do. The next Plan starts
	// from the kernel.
	Cleanup(ctx context.Context) error
}

// RulesPlan is what Plan tells the Dataplane.
type RulesPlan struct {
	// Steps holds the outcome of each step Plan attempted (reading a
	// family's rules, choosing the iptables backend); absent: not
	// attempted. A failed step keeps Apply from writing that part.
	Steps map[string]error
	// VIPs counts, per VIP address (/32, /128), the planned services that
	// use it. The backend keeps the map; the Dataplane only reads it, until
	// the next Plan, and also while Apply runs: Apply must not change it.
	VIPs map[netip.Prefix]int
	// Touched holds the VIPs whose use may have changed since the previous
	// Plan. The Dataplane looks at these only, unless it has reason to look
	// at every VIP (the interface was read, or a step failed).
	Touched map[netip.Prefix]bool
	// IPv6 is set when rules for an IPv6 service are planned: the
	// Dataplane then switches on IPv6 forwarding.
	IPv6 bool
}

// RulesStatus describes a rules backend for /status and the metrics.
type RulesStatus struct {
	// Backend names the backend.
	Backend Backend
	// Services counts the programmed services; Rules the rules (or, for a
	// backend without per-service rules, the elements) the backend holds
	// in the kernel.
	Services int
	Rules    int
	// IPTablesMode and IPTablesModeReason are the iptables backend in use
	// (nft or legacy; empty while undecided, or for a backend that is not
	// iptables) and why it was chosen.
	IPTablesMode       IPTablesMode
	IPTablesModeReason string
	// Table is the nftables backend's table ("inet edgeagent"); empty for
	// the iptables backend.
	Table string
	// Writes counts the kernel transactions the backend wrote since it
	// was built (iptables-restore runs, nftables batches).
	Writes int
	// Warnings are conditions that keep traffic from flowing which the
	// backend cannot fix without touching what is not its own.
	Warnings []string
}
