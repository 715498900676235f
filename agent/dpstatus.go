package agent

import (
	"maps"
	"slices"

	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/status"
)

// dataplaneStatus turns the dataplane's own status into /status's
// dataplane object: the dataplane package does not speak the /status
// schema, the agent assembles it.
func dataplaneStatus(st dataplane.Status) *status.Dataplane {
	out := &status.Dataplane{
		Backend:            string(st.Backend),
		NFTablesTable:      st.Table,
		Warnings:           slices.Clone(st.Warnings),
		Interface:          st.Interface,
		InterfaceKind:      st.InterfaceKind,
		Masquerade:         st.Masquerade,
		Sysctls:            maps.Clone(st.Sysctls),
		Rules:              st.Rules,
		LastSync:           st.LastSync,
		LastError:          st.LastError,
		IPTablesMode:       string(st.IPTablesMode),
		IPTablesModeReason: st.IPTablesModeReason,
		FailingSince:       st.FailingSince,
	}
	for _, f := range st.Failures {
		msg := ""
		if f.Err != nil {
			msg = f.Err.Error()
		}
		out.Failures = append(out.Failures, status.DataplaneFailure{Step: f.Step, Error: msg, Since: f.Since})
	}
	return out
}
