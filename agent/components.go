package agent

import (
	"context"
	"time"

	"github.com/arraynetworks/edgeagent/apv"
	"github.com/arraynetworks/edgeagent/bgp"
	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/model"
)

// The agent drives its reconcilers through these narrow interfaces; each
// takes the whole desired state, diffs against what it applied (or found at
// start) and applies only the difference.

// Dataplane programs VIPs and load balancing into the kernel.
type Dataplane interface {
	// Reconcile makes the kernel match the state. Only eligible reals
	// (model.Real.Eligible) receive new connections.
	Reconcile(ctx context.Context, s model.State) error
	// Programmed reports which virtual-service keys are in the kernel.
	Programmed() map[string]bool
	// Rejected says, per virtual-service key, why the dataplane left a
	// service out (address family unsupported, port taken, ...).
	Rejected() map[string]error
	// Status describes the kernel side; the agent turns it into /status's
	// dataplane object (dataplaneStatus).
	Status() dataplane.Status
}

// Speaker announces VIPs over BGP and reports its neighbors.
type Speaker interface {
	// Announce makes the set of advertised VIP routes equal to routes.
	Announce(ctx context.Context, routes []model.VIPRoute) error
	// Advertised reports which VIP prefixes are currently announced.
	Advertised() map[string]bool
	// Neighbors and Learned describe the sessions and the learned routes
	// in the speaker's own terms; the agent turns them into /status
	// (bgpstatus.go).
	Neighbors() []bgp.Neighbor
	Learned() []bgp.LearnedRoute
}

// Appliance pushes the desired state to APV devices.
type Appliance interface {
	Reconcile(ctx context.Context, s model.State) error
	Status() []apv.DeviceStatus
	// EventsStatus reports the CloudEvents sink of the scan (nil: none).
	EventsStatus() *apv.EventsStatus
}

// Prober runs the active health checks of reals.
type Prober interface {
	// Run probes until ctx ends, calling changed (non-blocking) whenever a
	// real's verdict changes.
	Run(ctx context.Context, changed func())
	// Apply starts probing the reals of s (and stops probing reals no longer
	// in it) and returns s with each real's Healthy set from its verdict.
	Apply(s model.State) model.State
	// RealStatus describes the last probe of a real of virtual service vsKey.
	RealStatus(vsKey string, r model.Real) (lastResult string, since time.Time)
	// Engine says whether probes run; the agent reports an engine that
	// could not start or stopped in /status, readiness and a Node Event.
	Engine() healthcheck.EngineStatus
}
