package racecheck

import "testing"

func TestUnexpected(t *testing.T) {
	upstream := `WARNING: DATA RACE
Write at 0x00c000284113 by goroutine 12:
  github.com/osrg/gobgp/v3/internal/pkg/table.(*Path).MarkStale()
      /x/path.go:396 +0x6b5
  github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).Serve()

Previous read at 0x00c000284113 by goroutine 19:
  github.com/osrg/gobgp/v3/internal/pkg/table.(*Path).IsStale()
      /x/path.go:400 +0x3c4
  github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).ListPath()
  github.com/arraynetworks/edgeagent/bgp.(*importer).want()

Goroutine 12 (running) created at:
  github.com/arraynetworks/edgeagent/bgp.(*Speaker).Start()
==================
`
	ours := `WARNING: DATA RACE
Read at 0x00c0000a0000 by goroutine 7:
  github.com/arraynetworks/edgeagent/bgp.(*Speaker).Advertised()

Previous write at 0x00c0000a0000 by goroutine 9:
  github.com/arraynetworks/edgeagent/bgp.(*Speaker).Announce()
==================
`
	mixed := `WARNING: DATA RACE
Write at 0x1 by goroutine 1:
  github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).Serve()

Previous read at 0x1 by goroutine 2:
  github.com/arraynetworks/edgeagent/bgp.(*Speaker).snapshot()
==================
`
	if got := Unexpected("log line\n" + upstream); len(got) != 0 {
		t.Errorf("a race wholly inside GoBGP was reported: %q", got)
	}
	if got := Unexpected(upstream + ours + mixed); len(got) != 2 {
		t.Errorf("got %d reports, want the 2 touching our code", len(got))
	}
	if got := Unexpected("no races here"); len(got) != 0 {
		t.Errorf("got %q", got)
	}
}
