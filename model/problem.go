package model

import (
	"fmt"
	"strings"
)

// Reasons an LBRoute is refused, used as the Accepted=False condition reason
// and in `edgeagent validate` output. They are part of the user contract.
const (
	ReasonInvalidSpec   = "InvalidSpec"
	ReasonVIPNotAllowed = "VIPNotAllowed"
	ReasonVIPConflict   = "VIPConflict"
	ReasonNoEndpoints   = "NoEndpoints"
)

// Problem is one thing wrong with an object, located by its field path
// ("spec.ports[1].port"), the way Kubernetes reports field errors.
type Problem struct {
	Field  string
	Reason string // one of the Reason* constants
	Detail string
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s", p.Field, p.Detail) }

// Problems is every problem found in one object.
type Problems []Problem

// Error joins the problems into one line; nil when there are none.
func (ps Problems) Error() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

// Reason is the reason of the first problem, used as a condition reason.
func (ps Problems) Reason() string {
	if len(ps) == 0 {
		return ""
	}
	return ps[0].Reason
}
