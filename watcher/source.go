// Package watcher feeds the agent its inputs: LBRoutes (and, in a cluster,
// the Services and EndpointSlices they point at, Namespaces and Nodes), from
// either a watched directory of YAML files (standalone mode) or client-go
// informers. It never touches the kernel and writes no status: it hands out
// snapshots (package kubestatus writes what the agent reports).
package watcher

import (
	"context"
	"net/netip"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
)

// Snapshot is a consistent view of a source's inputs to translation.
type Snapshot struct {
	Routes []*v1alpha1.LBRoute
	// Endpoints resolves service-form LBRoutes; nil means no Services known.
	Endpoints model.EndpointsLookup
	// Errors are inputs that could not be read (bad files, undecodable
	// objects); the rest of the snapshot is still good.
	Errors []SourceError
	// NodePeers are BGP peers discovered from Kubernetes Nodes.
	NodePeers []NodePeer
}

// SourceError is an input that could not be read: a file (standalone) or
// an object that could not be decoded. The agent shows them in /status.
type SourceError struct {
	// Source names the input ("routes.yaml[1]", "lbroute/ns/name").
	Source string
	Error  string
}

// NodePeer is a Node the agent should peer with.
type NodePeer struct {
	Node    string
	Address netip.Addr
}

// Source produces snapshots and says when a new one is ready.
type Source interface {
	// Run watches until ctx ends. It calls changed, which must not block,
	// whenever Snapshot would return something new.
	Run(ctx context.Context, changed func()) error
	// Snapshot returns the current inputs. Callers must not modify them.
	Snapshot() Snapshot
	// Synced reports whether the initial load is complete: until then the
	// agent does not reconcile, so that a restart never removes state only
	// because the source has not caught up yet.
	Synced() bool
}
