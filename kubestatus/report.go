package kubestatus

import (
	"context"

	"github.com/arraynetworks/edgeagent/status"
	"github.com/arraynetworks/edgeagent/translate"
)

// RouteReport is what the agent did with one LBRoute, for status writing.
type RouteReport struct {
	Result       translate.Result
	Programmed   bool
	Advertised   bool
	Reals        int
	HealthyReals int
	// Message says what went wrong with the route on this node besides a
	// rejection (the dataplane refused one of its services, ...).
	Message string
}

// Reporter takes the agent's verdicts back to where LBRoutes came from
// (LBRoute status and Events in a cluster; Writer is the one for a
// cluster). Implementations must be cheap
// to call often: they skip no-op writes and rate-limit.
type Reporter interface {
	ReportRoutes(ctx context.Context, reports []RouteReport)
	ReportNeighbors(ctx context.Context, neighbors []status.Neighbor)
}
