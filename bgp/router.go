package bgp

import (
	"context"
	"net/netip"
	"time"

	"github.com/arraynetworks/edgeagent/model"
)

// router is the BGP implementation the speaker drives: the seam between the
// desired-state logic (Speaker, its reconcilers, the supervisor and the
// importer) and GoBGP (gobgpRouter). Its vocabulary is the package's own
// (Peer, model.VIPRoute, peerState), never GoBGP's API types, so the logic
// is unit-tested against a fake (router_test.go) and the shim stays thin.
// Modelled on Cilium's pkg/bgpv1/types.Router.
type router interface {
	// Start runs the BGP instance with cfg's global settings (RouterID
	// resolved) and the export policy that lets only our own paths out. It
	// reports what happens through onEvent until ctx ends; onEvent must not
	// block (it runs on the router's own goroutine).
	Start(ctx context.Context, cfg Config, onEvent func(routerEvent)) error
	// Stop ends every session with a Cease notification and stops the
	// instance.
	Stop(ctx context.Context) error

	// AddPeer configures a neighbor (defaults applied). restarting sets the
	// graceful-restart Restart State and Forwarding State bits in our OPEN.
	AddPeer(ctx context.Context, p Peer, restarting bool) error
	// DeletePeer removes a neighbor, closing its session.
	DeletePeer(ctx context.Context, addr netip.Addr) error
	// DisablePeer holds a neighbor administratively down (reason goes out
	// in the Cease), EnablePeer lets it connect again.
	DisablePeer(ctx context.Context, addr netip.Addr, reason string) error
	EnablePeer(ctx context.Context, addr netip.Addr) error

	// AdvertisePath puts a VIP's host route into the RIB, replacing the
	// path it had; an attribute it cannot encode is an error naming it.
	AdvertisePath(ctx context.Context, r model.VIPRoute) error
	// WithdrawPath takes a VIP's host route out of the RIB.
	WithdrawPath(ctx context.Context, p netip.Prefix) error

	// Peers reads the session of every configured neighbor.
	Peers(ctx context.Context) ([]peerState, error)
	// Learned calls fn with every RIB destination inside cidr and the
	// paths peers sent for it (our own paths are left out).
	Learned(ctx context.Context, cidr netip.Prefix, fn func(netip.Prefix, []candidate)) error
}

// peerState is one neighbor's session as the router reports it.
type peerState struct {
	Address netip.Addr
	// State is the FSM state in lower case: idle, connect, active,
	// opensent, openconfirm, established.
	State string
	// OutQ is the number of updates queued towards the peer.
	OutQ uint32
	// UpdatesIn and UpdatesOut count UPDATE messages in this session.
	UpdatesIn, UpdatesOut uint64
	// Received counts the prefixes the peer sent (every family).
	Received int
	// LocalAddress is our end of the TCP session (invalid when down).
	LocalAddress    netip.Addr
	GracefulRestart bool
	// Since is when the session was established (zero when it is not).
	Since time.Time
	// EndOfRIBPending: the peer promised End-of-RIB (graceful restart) and
	// has not sent it yet.
	EndOfRIBPending bool
}

// eventKind says what a routerEvent reports.
type eventKind int

const (
	// eventPeerState: Peer's session moved to State.
	eventPeerState eventKind = iota
	// eventPeerError: Error says why Peer's session failed or went down
	// (a NOTIFICATION, hold timer expiry, ...).
	eventPeerError
	// eventLearned: the best paths peers sent for Prefixes changed, or a
	// peer sent End-of-RIB (EndOfRIB).
	eventLearned
)

// routerEvent is something the router saw happen.
type routerEvent struct {
	Kind     eventKind
	Peer     netip.Addr
	State    string
	Error    string
	Prefixes []netip.Prefix
	EndOfRIB bool
}
