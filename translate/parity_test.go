package translate_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/watcher"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// agentOnly lists the corpus objects the apiserver admits and the agent
// refuses, with the reason the CRD cannot check the rule. Every other object
// must get the same verdict from both. A new entry here is a new difference
// between `kubectl apply` and `edgeagent validate`: document it in README.md.
var agentOnly = map[string]string{
	"vip-outside-pools":           "VIP pools are the agent's configuration (vipPools), which the CRD does not see",
	"vip-pool-of-other-namespace": "VIP pools are the agent's configuration (vipPools), which the CRD does not see",
	"conflict-b":                  "a (vsIP, port, protocol) conflict is between LBRoutes; CRD rules see one object",
	"a2345678901234567890123456789012345678901234567890123456789": "the default vsName <namespace>-<name> is too long only because of the namespace, and CRD rules cannot read metadata.namespace",
}

// parityPools are the vipPools of an agent config, used for the agent-only
// cases; the others are validated as `edgeagent validate` does without a
// config, with every address in a pool.
var (
	parityPools = []model.Pool{
		{CIDR: netip.MustParsePrefix("10.200.0.0/24")},
		{CIDR: netip.MustParsePrefix("10.201.0.0/24"), Namespaces: []string{"infra"}},
		{CIDR: netip.MustParsePrefix("fd00:200::/64")},
	}
	everywhere = []model.Pool{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}, {CIDR: netip.MustParsePrefix("::/0")}}
)

const parityNamespace = "shop"

// parityCase is one corpus document and the verdict it must get.
type parityCase struct {
	name, origin string
	raw          []byte // one YAML document, as written
	verdict      string // accept | refuse | agent-only
	reason       string // agent-only: the agent's reason
	field        string // refuse, agent-only: the field both must name
}

// TestParity feeds every object of the corpus to a real kube-apiserver
// (server-side dry-run create, strict field validation: what `kubectl apply`
// does) and to the agent's validation (the decoding and checks `edgeagent
// validate` and standalone mode run), and asserts that both reach the
// verdict the corpus states, naming the same field.
func TestParity(t *testing.T) {
	cases := loadParityCorpus(t)
	cases = append(cases, largestObjects()...)
	var names []string
	for _, c := range cases {
		if c.verdict == "agent-only" {
			names = append(names, c.name)
		}
	}
	slices.Sort(names)
	if want := slices.Sorted(maps.Keys(agentOnly)); !slices.Equal(names, want) {
		t.Fatalf("agent-only cases in the corpus %v differ from the documented list %v", names, want)
	}
	for _, want := range []string{"interval-0", "timeout-0", "rise-0", "fall-0", "real-port-0", "real-duplicate",
		"real-other-family-v6", "target-port-70000", "vip-loopback-v4", "vip-multicast-v4", "vip-unspecified-v4"} {
		if !slices.ContainsFunc(cases, func(c parityCase) bool { return c.name == want }) {
			t.Fatalf("corpus lacks %s, one of the cases issue 14 names", want)
		}
	}

	s := apiservertest.Start(t, apiservertest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := s.Kubectl(ctx, "create", "namespace", parityNamespace); err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	agentOnlyResults := agentWithConfig(t, cases)

	accepted, refused := 0, 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			apiOK, apiMsg := apiserverVerdict(ctx, t, hc, s.URL, c)
			agentOK, agentProblems, agentFields := agentVerdict(c)
			switch c.verdict {
			case "accept":
				if !apiOK {
					t.Errorf("apiserver refused it: %s", apiMsg)
				}
				if !agentOK {
					t.Errorf("agent refused it: %s", agentProblems)
				}
				accepted++
			case "refuse":
				if apiOK {
					t.Errorf("apiserver admitted it; want it refused on %s", c.field)
				} else if !strings.Contains(apiMsg, c.field) {
					t.Errorf("apiserver refused it without naming %s: %s", c.field, apiMsg)
				}
				if agentOK {
					t.Errorf("agent accepted it; want it refused on %s", c.field)
				} else if !namesField(agentFields, c.field) {
					t.Errorf("agent refused it without naming %s: %s", c.field, agentProblems)
				}
				refused++
			case "agent-only":
				if !apiOK {
					t.Errorf("apiserver refused it (%s); the corpus lists it as a rule only the agent can check: move it to refuse", apiMsg)
				}
				res := agentOnlyResults[c.name]
				if res.Accepted || res.Problems.Reason() != c.reason || !slices.ContainsFunc(res.Problems, func(p model.Problem) bool { return strings.HasPrefix(p.Field, c.field) }) {
					t.Errorf("agent with vipPools %v: accepted=%v problems %v; want %s on %s", parityPools, res.Accepted, res.Problems, c.reason, c.field)
				}
			}
		})
	}
	t.Logf("%d objects: %d admitted by both, %d refused by both, %d refused by the agent only", len(cases), accepted, refused, len(agentOnly))
}

func loadParityCorpus(t *testing.T) []parityCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "parity", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in testdata/parity: %v", err)
	}
	var out []parityCase
	seen := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			raw, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			c, err := parseParityCase(raw)
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if c.name == "" {
				continue // only comments
			}
			if o, dup := seen[c.name]; dup {
				t.Fatalf("%s: %s also in %s", f, c.name, o)
			}
			seen[c.name] = f
			c.origin = filepath.Base(f)
			out = append(out, c)
		}
	}
	if len(out) < 150 {
		t.Fatalf("corpus has %d objects; it should cover every rule (150 or more)", len(out))
	}
	return out
}

func parseParityCase(raw []byte) (parityCase, error) {
	var head struct {
		Metadata struct {
			Name        string            `json:"name"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		return parityCase{}, err
	}
	c := parityCase{name: head.Metadata.Name, raw: raw}
	if c.name == "" {
		return c, nil
	}
	f := strings.Fields(head.Metadata.Annotations["edgeagent.test/expect"])
	switch {
	case len(f) == 1 && f[0] == "accept":
		c.verdict = "accept"
	case len(f) == 2 && f[0] == "refuse":
		c.verdict, c.field = f[0], f[1]
	case len(f) == 3 && f[0] == "agent-only":
		c.verdict, c.reason, c.field = f[0], f[1], f[2]
	default:
		return c, fmt.Errorf("%s: annotation edgeagent.test/expect %q is not accept, refuse FIELD or agent-only REASON FIELD", c.name, f)
	}
	return c, nil
}

// apiserverVerdict dry-runs a create of the document as sent, the way
// `kubectl apply` (strict field validation) would.
func apiserverVerdict(ctx context.Context, t *testing.T, hc *http.Client, base string, c parityCase) (bool, string) {
	t.Helper()
	js, err := yaml.YAMLToJSON(c.raw)
	if err != nil {
		t.Fatalf("YAML to JSON: %v", err)
	}
	url := fmt.Sprintf("%s/apis/%s/namespaces/%s/lbroutes?dryRun=All&fieldValidation=Strict", base, v1alpha1.GroupVersion, parityNamespace)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(js))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("dry-run create: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusCreated:
		return true, ""
	case http.StatusUnprocessableEntity, http.StatusBadRequest:
		var st metav1.Status
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("apiserver answered %d with %s", resp.StatusCode, body)
		}
		return false, st.Message
	default:
		t.Fatalf("apiserver answered %d, neither admitted nor invalid: %s", resp.StatusCode, body)
		return false, ""
	}
}

// agentVerdict decodes and validates the document on its own, as
// `edgeagent validate` does without a config.
func agentVerdict(c parityCase) (ok bool, problems string, fields []string) {
	docs := watcher.Decode(c.raw, parityNamespace)
	if len(docs) != 1 {
		return false, fmt.Sprintf("%d documents", len(docs)), nil
	}
	if docs[0].Err != nil {
		// Decode errors name the field in their text ("spec.ports.port").
		return false, docs[0].Err.Error(), []string{docs[0].Err.Error()}
	}
	res := translate.Route(docs[0].Route, translate.Options{Pools: everywhere})
	for _, p := range res.Problems {
		fields = append(fields, p.Field)
	}
	return res.Accepted, res.Problems.Error(), fields
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// namesField reports whether a problem's field path starts with want, or a
// decode error's text names it (without list indices, which the JSON
// decoder does not report).
func namesField(fields []string, want string) bool {
	for _, f := range fields {
		if strings.HasPrefix(f, want) || strings.Contains(f, indexRE.ReplaceAllString(want, "")) {
			return true
		}
	}
	return false
}

// agentWithConfig validates the agent-only cases together, with vipPools,
// as `edgeagent validate --config` (and a running agent) does.
func agentWithConfig(t *testing.T, cases []parityCase) map[string]translate.Result {
	t.Helper()
	var routes []*v1alpha1.LBRoute
	for _, c := range cases {
		if c.origin != "agent-only.yaml" {
			continue
		}
		docs := watcher.Decode(c.raw, parityNamespace)
		if len(docs) != 1 || docs[0].Err != nil {
			t.Fatalf("%s: %+v", c.name, docs)
		}
		routes = append(routes, docs[0].Route)
	}
	_, results := translate.Build(routes, translate.Options{Pools: parityPools})
	out := map[string]translate.Result{}
	for _, r := range results {
		out[r.Name] = r
	}
	return out
}

// largestObjects are the objects at every size bound of the CRD, and one
// past each: they prove the CEL rules fit the apiserver's runtime cost
// budget on the largest object it admits, and that both sides count alike.
func largestObjects() []parityCase {
	var cases []parityCase
	add := func(name, expect string, spec map[string]any) {
		doc := map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "LBRoute",
			"metadata": map[string]any{"name": name, "annotations": map[string]string{"edgeagent.test/expect": expect}},
			"spec":     spec,
		}
		raw, err := yaml.Marshal(doc)
		if err != nil {
			panic(err)
		}
		c, err := parseParityCase(raw)
		if err != nil {
			panic(err)
		}
		c.origin = "largestObjects"
		cases = append(cases, c)
	}
	ports := func(n int) []any {
		var out []any
		for i := range n {
			out = append(out, map[string]any{"port": 1000 + i, "protocol": []string{"TCP", "UDP"}[i%2], "targetPort": fmt.Sprint(20000 + i)})
		}
		return out
	}
	reals4 := func(n int) []any {
		var out []any
		for i := range n {
			out = append(out, map[string]any{"ip": fmt.Sprintf("10.244.%d.%d", i/250, i%250+1), "port": 65535 - i, "weight": 100})
		}
		return out
	}
	reals6 := func(n int) []any {
		var out []any
		for i := range n {
			out = append(out, map[string]any{"ip": fmt.Sprintf("fd00:244:ffff:ffff:ffff:ffff:ffff:%04x", i), "port": 65535})
		}
		return out
	}
	repeat := func(s string, n int) []string { return slices.Repeat([]string{s}, n) }
	statuses := strings.TrimSuffix(strings.Repeat("200-299,", 32), ",")
	longest := func() map[string]any {
		return map[string]any{
			"vsName": strings.Repeat("v", 63), "group": strings.Repeat("g", 63),
			"vsIP": "10.200.0.10", "policy": "wrr",
			"ports":       ports(64),
			"realServers": reals4(1024),
			"healthCheck": map[string]any{
				"type": "HTTP", "intervalSeconds": 3600, "timeoutSeconds": 3600, "riseCount": 100, "fallCount": 100,
				"path": "/" + strings.Repeat("p", 1023), "host": strings.Repeat("h", 253), "expectedStatus": statuses,
			},
			"bgp": map[string]any{
				"communities":      repeat("no-export-subconfed", 32),
				"largeCommunities": repeat("4294967295:4294967295:4294967295", 32),
				"localPref":        4294967295,
			},
		}
	}
	add("largest", "accept", longest())
	v6 := longest()
	v6["vsIP"], v6["realServers"] = "fd00:200::10", reals6(1024)
	add("largest-v6", "accept", v6)

	dup := longest()
	rs := reals4(1024)
	rs[1023] = rs[0]
	dup["realServers"] = rs
	add("largest-duplicate-real", "refuse spec.realServers", dup)
	mixed := longest()
	rs = reals4(1024)
	rs[1023] = map[string]any{"ip": "fd00:244::1"}
	mixed["realServers"] = rs
	add("largest-other-family-real", "refuse spec.realServers", mixed)

	over := func(name, field string, change func(map[string]any)) {
		s := longest()
		change(s)
		add(name, "refuse "+field, s)
	}
	over("reals-1025", "spec.realServers", func(s map[string]any) { s["realServers"] = reals4(1025) })
	over("ports-65", "spec.ports", func(s map[string]any) { s["ports"] = ports(65) })
	over("communities-33", "spec.bgp.communities", func(s map[string]any) {
		s["bgp"].(map[string]any)["communities"] = repeat("no-export", 33)
	})
	over("large-communities-33", "spec.bgp.largeCommunities", func(s map[string]any) {
		s["bgp"].(map[string]any)["largeCommunities"] = repeat("1:2:3", 33)
	})
	over("path-1025", "spec.healthCheck.path", func(s map[string]any) {
		s["healthCheck"].(map[string]any)["path"] = "/" + strings.Repeat("p", 1024)
	})
	over("host-254", "spec.healthCheck.host", func(s map[string]any) {
		s["healthCheck"].(map[string]any)["host"] = strings.Repeat("h", 254)
	})
	over("expected-status-257", "spec.healthCheck.expectedStatus", func(s map[string]any) {
		// Every part valid; only the length is over.
		s["healthCheck"].(map[string]any)["expectedStatus"] = statuses + ",200"
	})
	return cases
}
