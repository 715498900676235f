// Package racecheck reads the race-detector output of a process a test ran
// (the agent, a speaker) and tells races in the project's code from races
// inside GoBGP.
package racecheck

import (
	"regexp"
	"strings"
)

var access = regexp.MustCompile(`^\s*(Previous )?([Ww]rite|[Rr]ead) at 0x[0-9a-f]+ by (goroutine \d+|main goroutine):`)

// gobgpOnly reports whether every memory access in a race report happens in
// GoBGP's own functions. GoBGP v3.37.0 has such races between its server
// goroutine and its API readers: a graceful restart marks paths stale
// through a flag all clones share (table.(*Path).MarkStale), and a new OPEN
// rewrites the peer info paths point to (fsmHandler.opensent), while
// ListPath and the watchers read both without a lock (toPathAPI). The agent
// only calls the public API there and cannot serialise the two.
func gobgpOnly(report string) bool {
	lines := strings.Split(report, "\n")
	accesses := 0
	for i, l := range lines {
		if !access.MatchString(l) {
			continue
		}
		accesses++
		top := ""
		for _, f := range lines[i+1:] {
			if f = strings.TrimSpace(f); f != "" {
				top = f
				break
			}
		}
		if !strings.HasPrefix(top, "github.com/osrg/gobgp/") {
			return false
		}
	}
	return accesses > 0
}

// Unexpected returns the race reports in log that touch the project's own
// code (every report except those wholly inside GoBGP).
func Unexpected(log string) []string {
	const marker = "WARNING: DATA RACE"
	parts := strings.Split(log, marker)
	var out []string
	for _, p := range parts[1:] {
		if end := strings.Index(p, "=================="); end >= 0 {
			p = p[:end]
		}
		if !gobgpOnly(p) {
			out = append(out, marker+p)
		}
	}
	return out
}
