// Package monitoring holds the Prometheus Operator manifests for edgeagent;
// its test checks the alert rules with promtool.
package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/arraynetworks/edgeagent/internal/testreq"
)

// TestAlertRules extracts the rule groups from prometheusrule.yaml and runs
// `promtool check rules` and every unit test file in tests/ on them.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testreq.Missing(t, "promtool not found: run hack/install-monitoring.sh")
	}
	raw, err := os.ReadFile("prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Kind string         `json:"kind"`
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Kind != "PrometheusRule" || pr.Spec["groups"] == nil {
		t.Fatalf("prometheusrule.yaml: kind %q, no spec.groups", pr.Kind)
	}
	rules, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// apv-rules.test.yaml loads the rules as apv.rules.yaml, the other
	// test files as edgeagent.rules.yaml: the same content.
	for _, name := range []string{"apv.rules.yaml", "edgeagent.rules.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), rules, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testFiles, err := filepath.Glob(filepath.Join("tests", "*.test.yaml"))
	if err != nil || len(testFiles) < 2 {
		t.Fatalf("rule test files: %v %v", testFiles, err)
	}
	checks := [][]string{{"check", "rules", "edgeagent.rules.yaml"}}
	for _, f := range testFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		checks = append(checks, []string{"test", "rules", filepath.Base(f)})
	}
	for _, args := range checks {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		} else {
			t.Logf("promtool %v:\n%s", args, out)
		}
	}
}

// TestAgentRulesComplete holds the agent's own alerts to what operators
// rely on: severity, team and a runbook_url whose section exists in
// docs/runbook.md, and a promtool test in tests/agent-rules.test.yaml that
// expects the alert to fire at least once.
func TestAgentRulesComplete(t *testing.T) {
	raw, err := os.ReadFile("prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Spec struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Alert       string            `json:"alert"`
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &pr); err != nil {
		t.Fatal(err)
	}
	runbook, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(runbook), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	var tf struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	data, err := os.ReadFile(filepath.Join("tests", "agent-rules.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &tf); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			fires[a.Alertname] = fires[a.Alertname] || len(a.ExpAlerts) > 0
		}
	}
	const prefix = "https://github.com/arraynetworks/edgeagent/blob/main/docs/runbook.md#"
	n := 0
	for _, g := range pr.Spec.Groups {
		if g.Name != "edgeagent-agent" {
			continue
		}
		for _, r := range g.Rules {
			n++
			if r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			}
			if r.Labels["team"] == "" {
				t.Errorf("%s: no team label", r.Alert)
			}
			u := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(u, prefix)
			if !ok || anchor != strings.ToLower(r.Alert) || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q does not point at a section \"## %s\" of docs/runbook.md", r.Alert, u, r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary and description are required", r.Alert)
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no test in tests/agent-rules.test.yaml expects it to fire", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no edgeagent-agent group in prometheusrule.yaml")
	}
}
