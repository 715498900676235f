// Package helm_test checks the Helm chart deploy/helm/edgeagent: rendered
// with its defaults it gives the same objects as the kustomize base (and,
// with monitoring on, as the monitoring overlay), its schema refuses
// misspelt values with a message naming them, the config it renders is one
// the agent itself accepts, and it installs, upgrades and uninstalls
// against a real kube-apiserver.
//
// helm comes from hack/get-tools.sh (EDGEAGENT_TOOLS, default
// /var/cache/edgeagent/tools), kubectl (for `kubectl kustomize`, as
// deploy/daemonset's tests use it) from the machine.
package helm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/testreq"
	"sigs.k8s.io/yaml"
)

const (
	release   = "edgeagent"
	namespace = "edgeagent-system"
)

var monitoringOn = []string{"--set", "monitoring.serviceMonitor.enabled=true,monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true"}

func root() string  { return apiservertest.RepoRoot() }
func chart() string { return filepath.Join(root(), "deploy", "helm", "edgeagent") }

// need finds a tool or skips (fails under CI=true or make test: test-deps
// installs it).
func need(t *testing.T, path, hint string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		testreq.Missing(t, "%s not found: %s", path, hint)
	}
	return p
}

func helmBin(t *testing.T) string {
	dir := os.Getenv("EDGEAGENT_TOOLS")
	if dir == "" {
		dir = "/var/cache/edgeagent/tools"
	}
	return need(t, filepath.Join(dir, "helm"), "run hack/get-tools.sh")
}

type object = map[string]any

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out) + string(ee.Stderr), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, ee.Stderr)
		}
		return string(out), err
	}
	return string(out), nil
}

// parse splits a multi-document YAML stream into objects keyed
// "apiVersion kind namespace/name".
func parse(t *testing.T, stream string) map[string]object {
	t.Helper()
	out := map[string]object{}
	for _, doc := range strings.Split("\n"+stream, "\n---") {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("parse rendered YAML: %v\n%s", err, doc)
		}
		if len(o) == 0 {
			continue
		}
		k := key(o)
		if _, dup := out[k]; dup {
			t.Fatalf("%s rendered twice", k)
		}
		out[k] = o
	}
	return out
}

func key(o object) string {
	m, _ := o["metadata"].(object)
	return fmt.Sprintf("%v %v %v/%v", o["apiVersion"], o["kind"], m["namespace"], m["name"])
}

func kustomize(t *testing.T, dir string) map[string]object {
	t.Helper()
	kubectl := need(t, "kubectl", "install kubectl")
	out, err := run(t, kubectl, "kustomize", filepath.Join(root(), dir))
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, out)
}

func helmTemplate(t *testing.T, args ...string) map[string]object {
	t.Helper()
	out, err := run(t, helmBin(t), append([]string{"template", release, chart(), "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, out)
}

// helmOnly are the metadata the chart adds and the kustomize base has no
// equivalent for: Helm's standard labels, and the config checksum that
// rolls the pods when `helm upgrade` changes the config.
var helmOnlyLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}

func normalize(o object) object {
	o = roundTrip(o)
	dropKeys(o, []string{"metadata", "labels"}, helmOnlyLabels)
	dropKeys(o, []string{"spec", "template", "metadata", "annotations"}, []string{"checksum/config"})
	// Data that is itself a document compares as a document: the chart
	// renders the config with toYaml, the base keeps its comments.
	if o["kind"] == "ConfigMap" {
		data, _ := o["data"].(object)
		for k, v := range data {
			s, _ := v.(string)
			var doc any
			var err error
			switch {
			case strings.HasSuffix(k, ".yaml"):
				err = yaml.Unmarshal([]byte(s), &doc)
			case strings.HasSuffix(k, ".json"):
				err = json.Unmarshal([]byte(s), &doc)
			default:
				continue
			}
			if err == nil {
				data[k] = doc
			}
		}
	}
	return o
}

// roundTrip gives both sides the same Go types (numbers as float64).
func roundTrip(o object) object {
	b, _ := json.Marshal(o)
	var out object
	_ = json.Unmarshal(b, &out)
	return out
}

// dropKeys deletes keys from the map at path, and the map itself if it
// ends up empty.
func dropKeys(o object, path []string, keys []string) {
	parent := o
	for _, p := range path[:len(path)-1] {
		next, _ := parent[p].(object)
		if next == nil {
			return
		}
		parent = next
	}
	last := path[len(path)-1]
	m, _ := parent[last].(object)
	if m == nil {
		return
	}
	for _, k := range keys {
		delete(m, k)
	}
	if len(m) == 0 {
		delete(parent, last)
	}
}

// diff lists the paths where a and b differ.
func diff(path string, a, b any) []string {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		var out []string
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			out = append(out, diff(path+"."+k, av[k], bv[k])...)
		}
		return out
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			break
		}
		var out []string
		for i := range av {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return []string{fmt.Sprintf("%s: kustomize %s, chart %s", path, trim(ja), trim(jb))}
}

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// compare fails the test on every object that is missing on one side or
// differs, naming the field.
func compare(t *testing.T, want, got map[string]object) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		w, inBase := want[k]
		g, inChart := got[k]
		switch {
		case !inChart:
			t.Errorf("%s: in the kustomize base, not rendered by the chart", k)
		case !inBase:
			t.Errorf("%s: rendered by the chart, not in the kustomize base", k)
		default:
			for _, d := range diff("", normalize(w), normalize(g)) {
				t.Errorf("%s%s", k, d)
			}
		}
	}
	if len(want) == 0 {
		t.Fatal("nothing to compare")
	}
}

// TestChartDefaultsMatchKustomizeBase: the chart with its defaults and the
// kustomize base are the same objects, field by field — except the
// Namespace, which Helm creates (`helm install --create-namespace`) rather
// than the chart: a chart that also rendered it would fail that install.
func TestChartDefaultsMatchKustomizeBase(t *testing.T) {
	base := kustomize(t, "deploy/daemonset")
	ns := "v1 Namespace <nil>/" + namespace
	if _, ok := base[ns]; !ok {
		t.Fatalf("the base has no Namespace %s: update this test", namespace)
	}
	delete(base, ns)
	compare(t, base, helmTemplate(t, "--include-crds"))
}

// TestChartMonitoringMatchesKustomize: what the monitoring switches add
// is the monitoring overlay.
func TestChartMonitoringMatchesKustomize(t *testing.T) {
	all := helmTemplate(t, monitoringOn...)
	for k := range helmTemplate(t) {
		delete(all, k)
	}
	compare(t, kustomize(t, "deploy/daemonset/monitoring"), all)
}

// TestChartSchemaRefusesMisspeltValues: a misspelt or misplaced value
// fails rendering (and so `helm install`) with the path and the key.
func TestChartSchemaRefusesMisspeltValues(t *testing.T) {
	helm := helmBin(t)
	for _, tc := range []struct {
		set  string
		want string
	}{
		{"imagee.tag=v1", `at '': additional properties 'imagee' not allowed`},
		{"config.bgp.asnn=64512", `at '/config/bgp': additional properties 'asnn' not allowed`},
		{"config.bgp.peers[0].address=10.0.0.1,config.bgp.peers[0].holdtime=90s", `at '/config/bgp/peers/0': additional properties 'holdtime' not allowed`},
		{"config.healthCheck.holdTime=ten", `/config/healthCheck/holdTime`},
		{"config.apv.syncInterval=30s", `at '/config': additional properties 'apv' not allowed`},
		{"apv.devices[0].name=apv-a,apv.devices[0].urll=https://x", `additional properties 'urll' not allowed`},
		{"monitoring.serviceMonitor.enable=true", `at '/monitoring/serviceMonitor': additional properties 'enable' not allowed`},
		{"image.pullPolicy=Sometimes", `/image/pullPolicy`},
	} {
		t.Run(tc.set, func(t *testing.T) {
			out, err := run(t, helm, "template", release, chart(), "--namespace", namespace, "--set", tc.set)
			if err == nil {
				t.Fatalf("--set %s rendered:\n%.400s", tc.set, out)
			}
			if !strings.Contains(out, tc.want) || !strings.Contains(out, "values don't meet the specifications of the schema") {
				t.Fatalf("--set %s: error does not say %q:\n%s", tc.set, tc.want, out)
			}
		})
	}
}

// TestChartValuesRender: the values beyond the defaults do what they say,
// and the config file the chart renders is one the agent accepts.
func TestChartValuesRender(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
image: {repository: registry.example/edgeagent, tag: v9.9.9, pullPolicy: Always}
config:
  vipPools: [{cidr: 192.0.2.0/24}]
  bgp:
    asn: 64513
    listenPort: 1791
    peers: [{address: 10.0.0.1, asn: 64513, holdTime: 30s}]
  healthCheck: {holdTime: 5s, concurrency: 64}
  metricsAddress: ":9660"
  adminAddress: "127.0.0.1:9661"
apv:
  devices:
  - {name: apv-a, url: "https://192.0.2.10:9997", ca: true}
  - {name: apv-b, url: "https://192.0.2.11:9997", usernameFile: /etc/edgeagent/apv/username, passwordFile: /etc/edgeagent/apv/password, caFile: /etc/edgeagent/apv/ca.crt}
  - {name: apv-c, url: "https://192.0.2.12:9997"}
  credentialsSecret: apv-credentials
  scanInterval: 2m
nodeSelector: {role: edge, edgeagent.arraynetworks.com/edge: null}
tolerations: []
priorityClassName: ""
extraEnv: [{name: EXTRA, value: "1"}]
podAnnotations: {example.com/team: slb}
monitoring:
  additionalLabels: {release: kube-prometheus-stack}
  serviceMonitor: {enabled: true, interval: 15s}
  prometheusRule: {enabled: true, additionalLabels: {role: alert-rules}}
  dashboard: {enabled: true, namespace: grafana, annotations: {grafana_folder: Networking}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := helmTemplate(t, "-f", values)
	get := func(k string) object {
		t.Helper()
		o, ok := objs[k]
		if !ok {
			t.Fatalf("no %s rendered", k)
		}
		return roundTrip(o)
	}
	cm := get("v1 ConfigMap edgeagent-system/edgeagent-config")
	raw := cm["data"].(object)["config.yaml"].(string)
	cfg, err := config.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("the agent refuses the rendered config: %v\n%s", err, raw)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the rendered config does not validate: %v\n%s", err, raw)
	}
	if cfg.BGP.ASN != 64513 || len(cfg.BGP.Peers) != 1 || cfg.BGP.Peers[0].HoldTime.Duration != 30*time.Second || cfg.HealthCheck.Concurrency != 64 {
		t.Errorf("config values lost:\n%s", raw)
	}
	if n := len(cfg.APV.Devices); n != 3 || cfg.APV.ScanInterval.Duration != 2*time.Minute {
		t.Fatalf("apv: %+v", cfg.APV)
	}
	a, b, c := cfg.APV.Devices[0], cfg.APV.Devices[1], cfg.APV.Devices[2]
	if a.UsernameFile != "/etc/edgeagent/apv/apv-a-username" || a.PasswordFile != "/etc/edgeagent/apv/apv-a-password" || a.CAFile != "/etc/edgeagent/apv/apv-a-ca.crt" {
		t.Errorf("apv-a credential files (NAME- keys, ca: true): %+v", a)
	}
	if b.UsernameFile != "/etc/edgeagent/apv/username" || b.PasswordFile != "/etc/edgeagent/apv/password" || b.CAFile != "/etc/edgeagent/apv/ca.crt" {
		t.Errorf("apv-b credential files (named): %+v", b)
	}
	if c.UsernameFile != "/etc/edgeagent/apv/apv-c-username" || c.CAFile != "" {
		t.Errorf("apv-c credential files (defaults, no CA): %+v", c)
	}

	ds := get("apps/v1 DaemonSet edgeagent-system/edgeagent")
	js, _ := json.Marshal(ds)
	for _, want := range []string{
		`"image":"registry.example/edgeagent:v9.9.9"`, `"imagePullPolicy":"Always"`,
		`{"containerPort":9660,"name":"metrics","protocol":"TCP"}`, `{"containerPort":1791,"name":"bgp","protocol":"TCP"}`,
		`"port":9661`, `{"name":"EXTRA","value":"1"}`, `"example.com/team":"slb"`, `"nodeSelector":{"role":"edge"}`,
		`{"mountPath":"/etc/edgeagent/apv","name":"apv-credentials","readOnly":true}`,
		`"secret":{"defaultMode":256,"optional":true,"secretName":"apv-credentials"}`,
		`"image":"registry.example/edgeagent:v9.9.9","imagePullPolicy":"Always","name":"prepare-node"`,
	} {
		if !strings.Contains(string(js), want) {
			t.Errorf("DaemonSet lacks %s", want)
		}
	}
	for _, gone := range []string{`"tolerations"`, `"priorityClassName"`} {
		if strings.Contains(string(js), gone) {
			t.Errorf("DaemonSet has %s although the value is empty", gone)
		}
	}
	for _, k := range []string{
		"monitoring.coreos.com/v1 ServiceMonitor edgeagent-system/edgeagent",
		"monitoring.coreos.com/v1 PrometheusRule edgeagent-system/edgeagent-apv",
		"v1 ConfigMap grafana/edgeagent-dashboard",
	} {
		labels := get(k)["metadata"].(object)["labels"].(object)
		if labels["release"] != "kube-prometheus-stack" {
			t.Errorf("%s: labels %v lack release: kube-prometheus-stack", k, labels)
		}
	}
	if l := get("monitoring.coreos.com/v1 PrometheusRule edgeagent-system/edgeagent-apv")["metadata"].(object)["labels"].(object); l["role"] != "alert-rules" {
		t.Errorf("PrometheusRule labels %v", l)
	}
	dash := get("v1 ConfigMap grafana/edgeagent-dashboard")
	if dash["metadata"].(object)["labels"].(object)["grafana_dashboard"] != "1" || dash["metadata"].(object)["annotations"].(object)["grafana_folder"] != "Networking" {
		t.Errorf("dashboard ConfigMap metadata: %v", dash["metadata"])
	}
	svc := get("v1 Service edgeagent-system/edgeagent-metrics")
	if p := svc["spec"].(object)["ports"].([]any)[0].(object)["port"]; p != float64(9660) {
		t.Errorf("metrics Service port %v, want 9660", p)
	}
	sm, _ := json.Marshal(get("monitoring.coreos.com/v1 ServiceMonitor edgeagent-system/edgeagent"))
	if !strings.Contains(string(sm), `"interval":"15s"`) {
		t.Errorf("ServiceMonitor interval: %s", sm)
	}
}

// TestChartReleaseName: another release name prefixes every object, so the
// objects of two releases never collide, and the references follow.
func TestChartReleaseName(t *testing.T) {
	out, err := run(t, helmBin(t), "template", "lb", chart(), "--namespace", "lb-system")
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, out)
	for _, k := range []string{
		"apps/v1 DaemonSet lb-system/lb-edgeagent", "v1 ConfigMap lb-system/lb-edgeagent-config",
		"v1 ServiceAccount lb-system/lb-edgeagent", "rbac.authorization.k8s.io/v1 ClusterRole <nil>/lb-edgeagent",
		"rbac.authorization.k8s.io/v1 Role lb-system/lb-edgeagent-leader-election",
	} {
		if _, ok := objs[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
	js, _ := json.Marshal(objs["rbac.authorization.k8s.io/v1 ClusterRoleBinding <nil>/lb-edgeagent"])
	if !strings.Contains(string(js), `{"kind":"ServiceAccount","name":"lb-edgeagent","namespace":"lb-system"}`) {
		t.Errorf("ClusterRoleBinding subject: %s", js)
	}
	js, _ = json.Marshal(objs["apps/v1 DaemonSet lb-system/lb-edgeagent"])
	if !strings.Contains(string(js), `"configMap":{"name":"lb-edgeagent-config"}`) || !strings.Contains(string(js), `"serviceAccountName":"lb-edgeagent"`) {
		t.Errorf("DaemonSet references: %s", js)
	}
}

// TestChartInstallUpgradeUninstall runs helm against a real kube-apiserver:
// install (CRDs from crds/, objects validated by the server), an upgrade
// that changes the config (the DaemonSet follows), uninstall (objects gone,
// CRDs kept, as Helm does: deleting them would delete every LBRoute).
func TestChartInstallUpgradeUninstall(t *testing.T) {
	helm := helmBin(t)
	s := apiservertest.Start(t, apiservertest.Options{CRDDir: "-"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h := func(args ...string) string {
		t.Helper()
		out, err := run(t, helm, append(args, "--kubeconfig", s.Kubeconfig)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	h("install", release, chart(), "--namespace", namespace, "--create-namespace")
	out, err := s.Kubectl(ctx, "-n", namespace, "get", "daemonset/edgeagent", "configmap/edgeagent-config", "serviceaccount/edgeagent",
		"role/edgeagent-leader-election", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(out)); n != 4 {
		t.Fatalf("after install: %s", out)
	}
	if _, err := s.Kubectl(ctx, "get", "crd/lbroutes.apv.arraynetworks.com", "crd/edgenodestatuses.apv.arraynetworks.com"); err != nil {
		t.Fatal(err)
	}
	// A route is accepted by the CRD the chart installed.
	route := filepath.Join(t.TempDir(), "route.yaml")
	if err := os.WriteFile(route, []byte("apiVersion: apv.arraynetworks.com/v1alpha1\nkind: LBRoute\nmetadata: {name: web, namespace: default}\nspec:\n  vsIP: 10.200.0.10\n  ports: [{port: 80}]\n  realServers: [{ip: 10.244.1.10}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Kubectl(ctx, "apply", "-f", route); err != nil {
		t.Fatal(err)
	}

	h("upgrade", release, chart(), "--namespace", namespace, "--set", "config.bgp.listenPort=1791")
	port, err := s.Kubectl(ctx, "-n", namespace, "get", "daemonset/edgeagent", "-o", `jsonpath={.spec.template.spec.containers[0].ports[?(@.name=="bgp")].containerPort}`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(port) != "1791" {
		t.Errorf("after upgrade the bgp port is %q, want 1791", port)
	}
	cfg, err := s.Kubectl(ctx, "-n", namespace, "get", "configmap/edgeagent-config", "-o", `jsonpath={.data.config\.yaml}`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg, "listenPort: 1791") {
		t.Errorf("after upgrade the config is:\n%s", cfg)
	}
	if hist := h("history", release, "--namespace", namespace); !strings.Contains(hist, "2") {
		t.Errorf("history: %s", hist)
	}

	h("uninstall", release, "--namespace", namespace, "--wait")
	out, _ = s.Kubectl(ctx, "-n", namespace, "get", "daemonset,configmap,serviceaccount,role,rolebinding", "-l", "app.kubernetes.io/instance="+release, "-o", "name")
	if strings.TrimSpace(out) != "" {
		t.Errorf("left after uninstall: %s", out)
	}
	if out, _ := s.Kubectl(ctx, "get", "clusterrole/edgeagent", "-o", "name"); strings.TrimSpace(out) != "" && !strings.Contains(out, "NotFound") {
		t.Errorf("ClusterRole left after uninstall: %s", out)
	}
	names, err := s.Kubectl(ctx, "get", "crd", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(names), "customresourcedefinition.apiextensions.k8s.io/lbroutes.apv.arraynetworks.com") {
		t.Errorf("uninstall removed the LBRoute CRD (and with it every LBRoute): %s", names)
	}
	if _, err := s.Kubectl(ctx, "get", "lbroute/web", "-n", "default"); err != nil {
		t.Errorf("the LBRoute did not survive uninstall: %v", err)
	}
}
