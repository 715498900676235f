package agent

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/golden"

	"github.com/arraynetworks/edgeagent/bgp"
)

// statusSpeaker reports fixed neighbors and learned routes.
type statusSpeaker struct {
	fakeSpeaker
	neighbors []bgp.Neighbor
	learned   []bgp.LearnedRoute
}

func (s *statusSpeaker) Neighbors() []bgp.Neighbor   { return s.neighbors }
func (s *statusSpeaker) Learned() []bgp.LearnedRoute { return s.learned }

// The speaker's neighbors and learned routes as /status serves them: the
// field names and value forms are a user contract (docs/DESIGN.md), so
// the golden file is the /status JSON itself, cut from the whole document.
func TestBGPStatusGolden(t *testing.T) {
	addr := netip.MustParseAddr
	sp := &statusSpeaker{
		neighbors: []bgp.Neighbor{
			{Address: addr("10.99.0.11"), ASN: 64512, State: "established", Uptime: 90*time.Second + 900*time.Millisecond,
				Received: 3, Accepted: 2, Advertised: 5, LocalAddress: addr("10.99.0.1"), GracefulRestart: true,
				Source: "config", UpdatesReceived: 7, UpdatesSent: 9},
			{Address: addr("10.99.0.21"), ASN: 65001, State: "active", LocalAddress: addr("10.99.0.1"),
				LastError: "TCP MD5 signature mismatch: the peer uses a different password (kernel TCPMD5Failure rising)", Source: "node/frr"},
			{Address: addr("fd00::21"), ASN: 64512, State: "idle", LastError: "waiting for the first announcement before opening the session", Source: "config"},
		},
		learned: []bgp.LearnedRoute{
			{Prefix: netip.MustParsePrefix("10.244.1.0/24"), NextHops: []netip.Addr{addr("10.99.0.11"), addr("10.99.0.12")}, Metric: 1024},
			{Prefix: netip.MustParsePrefix("fd00:244::/64"), NextHops: []netip.Addr{addr("fd00::21")}, Metric: 1024, ShadowedBy: "bird metric 32 via fd00::21"},
		},
	}
	got := bgpStatusJSON(t, sp)
	golden.Assert(t, filepath.Join("testdata", "bgpstatus.golden"), got)

	// No neighbors is an empty list, never null; no learned route leaves
	// the field out.
	if got, want := string(bgpStatusJSON(t, &statusSpeaker{})), "{\n  \"neighbors\": []\n}\n"; got != want {
		t.Errorf("empty:\n%s\nwant\n%s", got, want)
	}
}

// bgpStatusJSON is the neighbors and learnedRoutes members of the /status
// document the agent builds with speaker sp.
func bgpStatusJSON(t *testing.T, sp Speaker) []byte {
	t.Helper()
	a := New(Options{Config: testConfig(), Source: &fakeSource{}, Speaker: sp})
	doc, err := json.Marshal(a.Status())
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(doc, &all); err != nil {
		t.Fatal(err)
	}
	part := map[string]json.RawMessage{}
	for _, k := range []string{"neighbors", "learnedRoutes"} {
		if v, ok := all[k]; ok {
			part[k] = v
		}
	}
	out, err := json.MarshalIndent(part, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}
