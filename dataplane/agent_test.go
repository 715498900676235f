package dataplane_test

import (
	"github.com/arraynetworks/edgeagent/agent"
	"github.com/arraynetworks/edgeagent/dataplane"
)

var _ agent.Dataplane = (*dataplane.Dataplane)(nil)
