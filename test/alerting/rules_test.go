package alerting

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// The rewrite changes `for` and nothing else, and leaves the kept rules
// alone.
func TestRuleFileRewritesFor(t *testing.T) {
	manifest, err := os.ReadFile(filepath.Join("..", "..", "deploy", "daemonset", "monitoring", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := ruleFile(manifest, 2*time.Second, "EdgeAgentDown")
	if err != nil {
		t.Fatal(err)
	}
	var orig, got struct {
		Spec   struct{ Groups []map[string]any } `json:"spec"`
		Groups []map[string]any                  `json:"groups"`
	}
	if err := yaml.Unmarshal(manifest, &orig); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Groups) != len(orig.Spec.Groups) || len(got.Groups) == 0 {
		t.Fatalf("%d groups, want %d", len(got.Groups), len(orig.Spec.Groups))
	}
	rewritten := 0
	for i, g := range got.Groups {
		og := orig.Spec.Groups[i]
		rules, orules := g["rules"].([]any), og["rules"].([]any)
		for j, r := range rules {
			rule, orule := r.(map[string]any), orules[j].(map[string]any)
			for k, v := range orule {
				want := v
				if k == "for" && rule["alert"] != "EdgeAgentDown" {
					want = "2s"
				}
				if k == "for" && rule["alert"] == "EdgeAgentDown" && v == "2s" {
					t.Fatal("EdgeAgentDown's for is already 2s: the test proves nothing")
				}
				if gv, _ := yaml.Marshal(rule[k]); !strings.EqualFold(string(gv), mustYAML(t, want)) {
					t.Errorf("%v.%s = %s, want %s", rule["alert"], k, gv, mustYAML(t, want))
				}
				if k == "for" && want == "2s" {
					rewritten++
				}
			}
			if _, had := orule["for"]; !had {
				if _, has := rule["for"]; has {
					t.Errorf("%v: for added", rule["alert"])
				}
			}
		}
	}
	if rewritten < 10 {
		t.Errorf("only %d rules rewritten", rewritten)
	}
}

func mustYAML(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
