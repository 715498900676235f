package dashboard

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The shipped JSON is what Build makes (make generate writes it; this
// fails when someone edits one without the other).
func TestShippedJSONIsCurrent(t *testing.T) {
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "deploy", "daemonset", "monitoring", "dashboards", "edgeagent.json")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s is stale: run make generate", path)
	}
}

// Every panel has a title and at least one Prometheus query that selects
// the edgeagent job through the instance variable.
func TestPanelsQueryTheAgent(t *testing.T) {
	raw, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	qs, err := Queries(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 30 {
		t.Fatalf("%d queries, want the whole dashboard (30+)", len(qs))
	}
	titles := map[string]bool{}
	for _, q := range qs {
		titles[q.Panel] = true
		if !strings.Contains(q.Expr, `job="edgeagent", instance=~"$instance"`) {
			t.Errorf("panel %q: query %q does not select the agent's job and $instance", q.Panel, q.Expr)
		}
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"BGP sessions", "Prefixes", "Healthy reals", "Reconcile latency", "Dataplane sync latency",
		"Connected / stale", "Probes per second", "APV HA state", "Certificate expiry"} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
}
