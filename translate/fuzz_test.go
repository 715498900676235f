package translate_test

import (
	"net/netip"
	"testing"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/watcher"
)

// FuzzDecodeValidate feeds arbitrary bytes through what the agent does with
// a file: decode every document, validate and translate each route, then
// build the state across them. It must never panic, and an accepted route
// must satisfy the invariants reconcilers rely on. The seed corpus is in
// testdata/fuzz/FuzzDecodeValidate; run it longer with
//
//	go test ./translate -run '^$' -fuzz FuzzDecodeValidate -fuzztime 60s
func FuzzDecodeValidate(f *testing.F) {
	f.Add([]byte(base))
	pools := []model.Pool{{CIDR: netip.MustParsePrefix("10.0.0.0/8")}, {CIDR: netip.MustParsePrefix("fd00::/8")}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var routes []*v1alpha1.LBRoute
		for _, d := range watcher.Decode(data, "default") {
			if d.Err == nil {
				routes = append(routes, d.Route)
			}
		}
		state, results := translate.Build(routes, translate.Options{Pools: pools})
		seen := map[model.Frontend]bool{}
		for _, vs := range state.Services {
			if seen[vs.Frontend()] {
				t.Fatalf("two services on %s", vs.Frontend())
			}
			seen[vs.Frontend()] = true
			if !vs.VIP.IsValid() || vs.Port == 0 || (vs.Protocol != model.TCP && vs.Protocol != model.UDP) {
				t.Fatalf("accepted an invalid frontend: %+v", vs)
			}
			if len(vs.Name) == 0 || len(vs.Name) > translate.MaxAPVNameLen || len(vs.Group) > translate.MaxAPVNameLen {
				t.Fatalf("name out of bounds: %q / %q", vs.Name, vs.Group)
			}
			for _, r := range vs.Reals {
				if !r.IP.IsValid() || r.Port == 0 || r.Weight < 1 || r.Weight > 100 || r.IP.Is4() != vs.VIP.Is4() {
					t.Fatalf("accepted an invalid real: %+v in %s", r, vs.Key())
				}
			}
		}
		for _, r := range results {
			if !r.Accepted && len(r.Problems) == 0 {
				t.Fatalf("refused %s without a problem", r.Key())
			}
			for _, p := range r.Problems {
				if p.Field == "" || p.Reason == "" || p.Detail == "" {
					t.Fatalf("problem without field, reason or detail: %+v", p)
				}
			}
		}
	})
}
