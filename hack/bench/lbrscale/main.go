// Command lbrscale measures how LBRoute status scales with routes and edge
// nodes, against the real kube-apiserver + etcd: K edgeagent processes,
// each in its own network namespace with BGP off (the dataplane programs
// that namespace's kernel), and optionally M lightweight agents (one
// process, dataplane and BGP off: hack/bench/simnode), all reporting on N
// LBRoutes created before the agents start. It prints one table row: the
// time until every LBRoute is programmed on all nodes (per the leader's
// Programmed condition), the status writes that took, etcd's database
// size, the apiserver's and the agents' RSS; then, if asked, what a single
// change, a node joining, an agent restarting and a node leaving cost.
//
// It needs root (network namespaces) and the binaries of
// hack/get-apiserver.sh. Everything it creates (namespaces, processes,
// files) is removed when it ends, also on Ctrl-C. hack/bench/lbrscale.sh
// runs the rows of docs/benchmarks/kube.md.
//
// Layout: the tool re-runs itself inside a namespace "<id>-api" that holds
// etcd, kube-apiserver (on 10.97.0.1, bridge br0) and the measuring client;
// agent i runs in "<id>-a<i>" at 10.97.1.i, attached to br0 by a veth.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/lbrgen"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

type options struct {
	Routes, Agents, Sim int
	Namespaces          int
	ServiceForm         bool
	StatusQPS           float64
	StatusBurst         int
	Tree                string // holds bin/edgeagent, bin/simnode, deploy/daemonset
	K8sBin              string
	Label               string
	Out                 string
	Timeout             time.Duration
	Changes             int
	Join                bool
	Restart             bool
	Leave               bool
	Pprof               bool
	CPUProfile          bool
	Keep                bool
	GoMemLimit          string
	GoGC                string
	Backend             string
	ProfileDelay        time.Duration
	Quiet               time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.Routes, "routes", 1000, "LBRoutes to create before the agents start")
	flag.IntVar(&o.Agents, "agents", 1, "full agents (edgeagent processes, each in its own network namespace); 0 with no -sim: only the routes, for the apiserver's and etcd's footprint")
	flag.IntVar(&o.Sim, "sim", 0, "lightweight agents in one simnode process (dataplane and BGP off)")
	flag.IntVar(&o.Namespaces, "namespaces", 10, "Kubernetes namespaces the routes are spread over")
	flag.BoolVar(&o.ServiceForm, "services", false, "service-form routes: a headless Service and an EndpointSlice per route")
	flag.Float64Var(&o.StatusQPS, "status-qps", 0, "kubernetes.statusQPS of the agents (0: their default)")
	flag.IntVar(&o.StatusBurst, "status-burst", 0, "kubernetes.statusBurst of the agents (0: their default)")
	flag.StringVar(&o.Tree, "tree", "", "source tree whose bin/edgeagent, bin/simnode and deploy/daemonset are measured (default: this repository)")
	flag.StringVar(&o.K8sBin, "k8s-bin", "", "directory of kube-apiserver and etcd (default: as internal/apiservertest finds them)")
	flag.StringVar(&o.Label, "label", "", "what to call this run in the table")
	flag.StringVar(&o.Out, "out", "", "append the result as one JSON line to this file")
	flag.DurationVar(&o.Timeout, "timeout", 40*time.Minute, "give up after this long")
	flag.IntVar(&o.Changes, "changes", 0, "after the first report: change this many routes, one at a time, and time each to status")
	flag.BoolVar(&o.Join, "join", false, "after the first report: start one more full agent and measure until every route counts it")
	flag.BoolVar(&o.Restart, "restart", false, "after the first report: restart a non-leader agent, then the leader, and count their writes")
	flag.BoolVar(&o.Leave, "leave", false, "at the end: stop the last full agent, delete its Node and measure until no status counts it")
	flag.BoolVar(&o.Pprof, "pprof", false, "after the first report, save heap profiles of agent 1 (needs /debug/pprof on its admin address) and the apiserver, and print their tops")
	flag.BoolVar(&o.CPUProfile, "cpuprofile", false, "during the first report (once 10% of the routes are complete), save 15 s CPU profiles of the leader and the apiserver; also 30 s of the last agent from its start and, with -changes, during the changes")
	flag.BoolVar(&o.Keep, "keep", false, "leave everything running at the end (for a look around); Ctrl-C cleans up")
	flag.StringVar(&o.GoMemLimit, "gomemlimit", "", "GOMEMLIMIT in the agents' environment (as the DaemonSet sets it from the memory limit)")
	flag.StringVar(&o.GoGC, "gogc", "", "GOGC in the agents' environment")
	flag.DurationVar(&o.ProfileDelay, "profile-delay", 0, "with -cpuprofile: start the last agent's 30 s profile this long after the agents start")
	flag.DurationVar(&o.Quiet, "quiet", 0, "after the first report: leave the cluster alone this long, then sample the RSS of the apiserver, etcd and the agents again (their steady state, after the burst)")
	flag.StringVar(&o.Backend, "backend", "", "dataplane.backend of the full agents: iptables or nftables (default: the agent's default)")
	table := flag.String("table", "", "print the table of the results in this JSON-lines file (from -out) and exit")
	flag.Parse()
	if *table != "" {
		if err := printTable(os.Stdout, *table); err != nil {
			fmt.Fprintln(os.Stderr, "lbrscale:", err)
			os.Exit(1)
		}
		return
	}
	if o.Tree == "" {
		o.Tree = apiservertest.RepoRoot()
	}
	var err error
	if os.Getenv("LBRSCALE_INNER") != "" {
		err = inner(o)
	} else {
		err = outer(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lbrscale:", err)
		os.Exit(1)
	}
}

// ---- outer: namespaces and cleanup, in the caller's namespace ----

const (
	apiAddr   = "10.97.0.1"
	agentNet  = "10.97.1."
	prefixLen = "/16"
)

func outer(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	id := fmt.Sprintf("lbrs%d", os.Getpid()%10000)
	api := id + "-api"
	defer cleanupNamespaces(id)
	for _, c := range [][]string{
		{"netns", "add", api},
		{"-n", api, "link", "set", "lo", "up"},
		{"-n", api, "link", "add", "br0", "type", "bridge"},
		{"-n", api, "addr", "add", apiAddr + prefixLen, "dev", "br0"},
		{"-n", api, "link", "set", "br0", "up"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", api, self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), "LBRSCALE_INNER="+id)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = os.Stdout, os.Stderr, os.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case s := <-sig:
		// The inner run cleans up on SIGTERM; give it a moment.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
		if err == nil {
			err = fmt.Errorf("stopped by %v", s)
		}
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything left in the group
	return err
}

// cleanupNamespaces kills what runs in the run's namespaces and deletes them.
func cleanupNamespaces(id string) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], id+"-") {
			continue
		}
		pids, _ := exec.Command("ip", "netns", "pids", f[0]).Output()
		for _, p := range strings.Fields(string(pids)) {
			if n, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
		_ = exec.Command("ip", "netns", "del", f[0]).Run()
	}
}

// ---- inner: the run itself, inside <id>-api ----

type run struct {
	o     options
	id    string
	dir   string
	srv   *apiservertest.Server
	admin kubernetes.Interface
	dyn   dynamic.Interface
	kc    string // the agents' kubeconfig

	// onTenth runs (once) when a tenth of the routes are complete.
	onTenth func()

	mu     sync.Mutex
	agents []*agentProc
	sim    *exec.Cmd
	log    *slog.Logger
}

type agentProc struct {
	n    int
	node string
	ns   string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// result is one run, as printed and saved.
type result struct {
	Label            string         `json:"label"`
	Routes           int            `json:"routes"`
	Agents           int            `json:"agents"`
	Sim              int            `json:"sim"`
	ServiceForm      bool           `json:"serviceForm"`
	Complete         float64        `json:"completeSeconds"`
	FirstComplete    float64        `json:"firstRouteCompleteSeconds"`
	Writes           map[string]int `json:"writes"`
	StatusWrites     int            `json:"statusWrites"`
	WriteFailures    int            `json:"writeFailures"`
	EtcdDBFile       int64          `json:"etcdDBFileBytes"`
	EtcdDBInUse      int64          `json:"etcdDBInUseBytes"`
	APIServerRSS     int64          `json:"apiserverRSSBytes"`
	APIServerHWM     int64          `json:"apiserverPeakRSSBytes"`
	EtcdRSS          int64          `json:"etcdRSSBytes"`
	AgentRSS         []int64        `json:"agentRSSBytes"`
	AgentHWM         []int64        `json:"agentPeakRSSBytes"`
	AgentAnonFile    []string       `json:"agentRSSAnonFile"`
	AgentMemStats    string         `json:"agentMemStats,omitempty"`
	SimRSS           int64          `json:"simRSSBytes,omitempty"`
	LBRouteBytes     int            `json:"lbrouteBytes"`
	ChangeLatencies  []float64      `json:"changeSeconds,omitempty"`
	ChangeWrites     []int          `json:"changeWrites,omitempty"`
	ChangeReconcile  float64        `json:"changeReconcileSeconds,omitempty"`
	JoinSeconds      float64        `json:"joinSeconds,omitempty"`
	JoinWrites       int            `json:"joinWrites,omitempty"`
	RestartWrites    map[string]int `json:"restartWrites,omitempty"`
	LeaveSeconds     float64        `json:"leaveSeconds,omitempty"`
	LeaveWrites      int            `json:"leaveWrites,omitempty"`
	LeaveNote        string         `json:"leaveNote,omitempty"`
	Load             string         `json:"loadAverage"`
	When             string         `json:"when"`
	Commit           string         `json:"commit"`
	Notes            []string       `json:"notes,omitempty"`
	HeapTop          string         `json:"heapTop,omitempty"`
	CompleteTimeline []string       `json:"timeline,omitempty"`
	CPUTop           string         `json:"cpuTop,omitempty"`
	StartCPUTop      string         `json:"startCpuTop,omitempty"`
	ChangeCPUTop     string         `json:"changeCpuTop,omitempty"`
	// CPU seconds from the agents' start to the first report's end.
	APIServerCPU float64 `json:"apiserverCPUSeconds"`
	EtcdCPU      float64 `json:"etcdCPUSeconds"`
	AgentsCPU    float64 `json:"agentsCPUSeconds"`
	// AgentsSysCPU is the kernel's part of AgentsCPU: with every agent's
	// namespace in this machine's one kernel, their VIP address inserts
	// contend (hack/bench/vipaddrs.sh).
	AgentsSysCPU float64 `json:"agentsSysCPUSeconds"`
	// HarnessCPU is this tool's own CPU over the same span (its watch of
	// every LBRoute): work the machine does that no cluster would.
	HarnessCPU float64 `json:"harnessCPUSeconds,omitempty"`
	// MachineBusy is the share of all cores busy (steal included) over the
	// same span, from /proc/stat: near 1, the run was CPU-bound.
	MachineBusy float64 `json:"machineBusy,omitempty"`
	// MachineSteal is the share of all cores the hypervisor took.
	MachineSteal float64 `json:"machineSteal,omitempty"`
	// Quiet* are the RSS after -quiet with nothing written by the harness.
	QuietSeconds      float64 `json:"quietSeconds,omitempty"`
	QuietAPIServerRSS int64   `json:"quietApiserverRSSBytes,omitempty"`
	QuietEtcdRSS      int64   `json:"quietEtcdRSSBytes,omitempty"`
	QuietAgentRSS     []int64 `json:"quietAgentRSSBytes,omitempty"`
}

func inner(o options) (err error) {
	r := &run{o: o, id: os.Getenv("LBRSCALE_INNER"), log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r.dir, err = os.MkdirTemp("", r.id+"-")
	if err != nil {
		return err
	}
	defer func() {
		r.stopAll()
		if r.srv != nil {
			r.srv.Stop()
		}
		if err == nil || !o.Keep {
			_ = os.RemoveAll(r.dir)
		}
	}()
	res, err := r.measure(ctx)
	if err != nil {
		return err
	}
	printResult(os.Stdout, res)
	if o.Out != "" {
		f, err := os.OpenFile(o.Out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		b, _ := json.Marshal(res)
		_, _ = f.Write(append(b, '\n'))
	}
	if o.Keep {
		r.log.Info("keeping everything up; Ctrl-C ends", "dir", r.dir, "kubeconfig", r.srv.Kubeconfig)
		<-ctx.Done()
	}
	return nil
}

func (r *run) measure(ctx context.Context) (*result, error) {
	o := r.o
	res := &result{Label: o.Label, Routes: o.Routes, Agents: o.Agents, Sim: o.Sim, ServiceForm: o.ServiceForm,
		When: time.Now().UTC().Format(time.RFC3339), Commit: gitCommit(o.Tree)}
	bin := o.K8sBin
	if bin == "" {
		var err error
		if bin, err = apiservertest.BinDir(); err != nil {
			return nil, err
		}
	}
	deploy := filepath.Join(o.Tree, "deploy", "daemonset")
	t0 := time.Now()
	apiDir := filepath.Join(r.dir, "apiserver")
	if err := os.MkdirAll(apiDir, 0o700); err != nil {
		return nil, err
	}
	srv, err := apiservertest.New(bin, apiDir, apiservertest.Options{
		Address: apiAddr, CRDDir: filepath.Join(deploy, "crds"),
	})
	if err != nil {
		return nil, fmt.Errorf("start apiserver: %w", err)
	}
	r.srv = srv
	r.log.Info("apiserver up", "after", time.Since(t0).Round(time.Millisecond), "url", srv.URL)
	if out, err := srv.Kubectl(ctx, "apply", "--server-side", "-k", deploy); err != nil {
		return nil, fmt.Errorf("apply %s: %w\n%s", deploy, err, out)
	}
	cfg := srv.Config()
	cfg.QPS, cfg.Burst = 500, 1000
	r.admin = kubernetes.NewForConfigOrDie(cfg)
	r.dyn = dynamic.NewForConfigOrDie(cfg)
	if err := r.agentKubeconfig(ctx); err != nil {
		return nil, err
	}

	total := o.Agents
	if o.Join {
		total++
	}
	var nodes []string
	for i := 1; i <= total; i++ {
		nodes = append(nodes, nodeName(i))
	}
	for i := range o.Sim {
		nodes = append(nodes, fmt.Sprintf("sim-%03d", i))
	}
	if err := lbrgen.CreateNodes(ctx, r.admin, nodes); err != nil {
		return nil, err
	}
	gen := lbrgen.Options{Routes: o.Routes, Namespaces: o.Namespaces, ServiceForm: o.ServiceForm}
	t0 = time.Now()
	if err := lbrgen.Create(ctx, lbrgen.Clients{Kube: r.admin, Dynamic: r.dyn}, gen, nil); err != nil {
		return nil, err
	}
	r.log.Info("routes created", "routes", o.Routes, "took", time.Since(t0).Round(time.Millisecond))

	watch, err := newRouteWatch(ctx, r.dyn)
	if err != nil {
		return nil, err
	}
	base, err := r.apiWrites(ctx)
	if err != nil {
		return nil, err
	}

	// The agents start together, as a DaemonSet's pods would on a fresh
	// install.
	apiCPU0, etcdCPU0 := cpuSeconds(r.srv.PID("kube-apiserver")), cpuSeconds(r.srv.PID("etcd"))
	selfCPU0, machine0 := cpuSeconds(os.Getpid()), machineTimes()
	start := time.Now()
	for i := 1; i <= o.Agents; i++ {
		if err := r.startAgent(ctx, i); err != nil {
			return nil, err
		}
	}
	if o.Sim > 0 {
		if err := r.startSim(ctx); err != nil {
			return nil, err
		}
	}
	nodeCount := o.Agents + o.Sim
	var startProfile sync.WaitGroup
	if o.CPUProfile {
		// The last agent's first 30 s (with several, a non-leader most
		// likely): listing, the first reconcile, the first report.
		last := r.agents[len(r.agents)-1]
		startProfile.Go(func() {
			url := fmt.Sprintf("http://%s:9561/debug/pprof/profile?seconds=30", last.addr)
			for time.Since(start) < 5*time.Second {
				if resp, err := http.Get(fmt.Sprintf("http://%s:9561/healthz", last.addr)); err == nil {
					resp.Body.Close()
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if d := r.o.ProfileDelay - time.Since(start); d > 0 {
				time.Sleep(d)
			}
			res.StartCPUTop = r.profile(ctx, "start-cpu", url, r.agentBinary())
		})
	}
	defer startProfile.Wait()
	cpuDone := make(chan struct{})
	if o.CPUProfile {
		r.onTenth = func() { res.CPUTop = r.cpuProfiles(ctx); close(cpuDone) }
	} else {
		close(cpuDone)
	}
	var first, all time.Duration
	var timeline []string
	if nodeCount > 0 {
		first, all, timeline, err = watch.waitAll(ctx, o.Routes, nodeCount, start, r)
	} else {
		// No agent (-agents 0): what the apiserver and etcd hold for the
		// routes alone, the floor under every other row's footprint.
		r.log.Info("no agents: measuring the routes alone")
	}
	r.onTenth = nil
	if err != nil {
		return nil, err
	}
	res.FirstComplete, res.Complete, res.CompleteTimeline = first.Seconds(), all.Seconds(), timeline
	res.APIServerCPU = cpuSeconds(r.srv.PID("kube-apiserver")) - apiCPU0
	res.EtcdCPU = cpuSeconds(r.srv.PID("etcd")) - etcdCPU0
	res.HarnessCPU = cpuSeconds(os.Getpid()) - selfCPU0
	res.MachineBusy, res.MachineSteal = machineTimes().since(machine0)
	for _, a := range r.agents {
		user, sys := cpuTimes(a.cmd.Process.Pid)
		res.AgentsCPU += user + sys
		res.AgentsSysCPU += sys
	}
	if r.sim != nil {
		res.AgentsCPU += cpuSeconds(r.sim.Process.Pid)
	}
	r.log.Info("every route programmed on every node", "routes", o.Routes, "nodes", nodeCount, "after", all.Round(time.Millisecond))
	after, err := r.settle(ctx)
	if err != nil {
		return nil, err
	}
	<-cpuDone
	res.Writes = diffWrites(after, base)
	res.StatusWrites, res.WriteFailures = statusWrites(res.Writes)

	if err := r.footprint(ctx, res); err != nil {
		return nil, err
	}
	res.LBRouteBytes = watch.size(ctx, r.dyn)
	if o.Quiet > 0 {
		if err := r.quietFootprint(ctx, res); err != nil {
			return nil, err
		}
	}
	if o.Pprof {
		res.HeapTop = r.heapProfiles(ctx)
	}

	if o.Changes > 0 {
		if err := r.changes(ctx, watch, nodeCount, res); err != nil {
			return nil, err
		}
	}
	if o.Restart {
		if err := r.restarts(ctx, res); err != nil {
			return nil, err
		}
	}
	if o.Join {
		before, err := r.apiWrites(ctx)
		if err != nil {
			return nil, err
		}
		js := time.Now()
		if err := r.startAgent(ctx, o.Agents+1); err != nil {
			return nil, err
		}
		nodeCount++
		if _, all, _, err = watch.waitAll(ctx, o.Routes, nodeCount, js, r); err != nil {
			return nil, err
		}
		res.JoinSeconds = all.Seconds()
		now, err := r.settle(ctx)
		if err != nil {
			return nil, err
		}
		res.JoinWrites, _ = statusWrites(diffWrites(now, before))
	}
	if o.Leave {
		if err := r.leave(ctx, watch, nodeCount, res); err != nil {
			return nil, err
		}
	}
	res.Load = loadAverage()
	return res, nil
}

func nodeName(i int) string { return fmt.Sprintf("edge-%d", i) }

// agentKubeconfig gives the agents the edgeagent ServiceAccount's identity
// (a TokenRequest; no controller-manager runs), so they work with exactly
// the RBAC and flow-control the manifests ship.
func (r *run) agentKubeconfig(ctx context.Context) error {
	tok, err := r.admin.CoreV1().ServiceAccounts("edgeagent-system").CreateToken(ctx, "edgeagent",
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](48 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for edgeagent-system/edgeagent: %w", err)
	}
	r.kc = filepath.Join(r.dir, "agent.kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {server: %s, certificate-authority: %s}
users:
- name: edgeagent
  user: {token: %s}
contexts:
- name: bench
  context: {cluster: bench, user: edgeagent}
current-context: bench
`, r.srv.URL, r.srv.CAFile, tok.Status.Token)
	return os.WriteFile(r.kc, []byte(kc), 0o600)
}

func (r *run) agentConfig(i int, addr string) (string, error) {
	var kube []string
	if r.o.StatusQPS > 0 {
		kube = append(kube, fmt.Sprintf("statusQPS: %g", r.o.StatusQPS))
	}
	if r.o.StatusBurst > 0 {
		kube = append(kube, fmt.Sprintf("statusBurst: %d", r.o.StatusBurst))
	}
	kube = append(kube, "namespace: edgeagent-system")
	backend := ""
	if r.o.Backend != "" {
		backend = ", backend: " + r.o.Backend
	}
	cfg := fmt.Sprintf(`nodeName: %s
source: {kubeconfig: %s}
vipPools:
- cidr: 10.200.0.0/16
bgp: {enabled: false}
dataplane: {vipInterface: edge-vip0, masquerade: true%s}
kubernetes: {%s}
metricsAddress: "%s:9560"
adminAddress: "%s:9561"
logLevel: info
`, nodeName(i), r.kc, backend, strings.Join(kube, ", "), addr, addr)
	p := filepath.Join(r.dir, fmt.Sprintf("agent-%d.yaml", i))
	return p, os.WriteFile(p, []byte(cfg), 0o644)
}

func (r *run) startAgent(ctx context.Context, i int) error {
	ns := fmt.Sprintf("%s-a%d", r.id, i)
	addr := fmt.Sprintf("%s%d", agentNet, i)
	if !nsExists(ns) {
		veth := fmt.Sprintf("va%d", i)
		for _, c := range [][]string{
			{"netns", "add", ns},
			{"-n", ns, "link", "set", "lo", "up"},
			{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"link", "set", veth, "master", "br0", "up"},
			{"-n", ns, "addr", "add", addr + prefixLen, "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
		} {
			if out, err := exec.CommandContext(ctx, "ip", c...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %s: %v: %s", strings.Join(c, " "), err, out)
			}
		}
	}
	cfg, err := r.agentConfig(i, addr)
	if err != nil {
		return err
	}
	a := &agentProc{n: i, node: nodeName(i), ns: ns, addr: addr, done: make(chan struct{}),
		log: filepath.Join(r.dir, fmt.Sprintf("agent-%d-%d.log", i, time.Now().UnixNano()))}
	f, err := os.Create(a.log)
	if err != nil {
		return err
	}
	a.cmd = exec.Command("ip", "netns", "exec", ns, filepath.Join(r.o.Tree, "bin", "edgeagent"), "run", "--config", cfg)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	a.cmd.Env = os.Environ()
	if r.o.GoMemLimit != "" {
		a.cmd.Env = append(a.cmd.Env, "GOMEMLIMIT="+r.o.GoMemLimit)
	}
	if r.o.GoGC != "" {
		a.cmd.Env = append(a.cmd.Env, "GOGC="+r.o.GoGC)
	}
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		f.Close()
		return err
	}
	go func() { _ = a.cmd.Wait(); f.Close(); close(a.done) }()
	r.mu.Lock()
	r.agents = append(r.agents, a)
	r.mu.Unlock()
	return nil
}

func (r *run) startSim(ctx context.Context) error {
	logf, err := os.Create(filepath.Join(r.dir, "simnode.log"))
	if err != nil {
		return err
	}
	args := []string{"-kubeconfig", r.kc, "-count", strconv.Itoa(r.o.Sim), "-prefix", "sim-", "-namespace", "edgeagent-system"}
	if r.o.StatusQPS > 0 {
		args = append(args, "-status-qps", fmt.Sprint(r.o.StatusQPS))
	}
	cmd := exec.Command(filepath.Join(r.o.Tree, "bin", "simnode"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	r.sim = cmd
	return nil
}

func (a *agentProc) stop(sig syscall.Signal) {
	if a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

func (a *agentProc) alive() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

func (r *run) stopAll() {
	r.mu.Lock()
	agents := slices.Clone(r.agents)
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Go(func() { a.stop(syscall.SIGTERM) })
	}
	if r.sim != nil && r.sim.Process != nil {
		_ = r.sim.Process.Kill()
	}
	wg.Wait()
}

// checkAlive fails the run when an agent died: its log tail says why.
func (r *run) checkAlive() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.agents {
		if !a.alive() && a.cmd.ProcessState != nil && !a.cmd.ProcessState.Success() && !a.cmd.ProcessState.Exited() {
			continue // killed by us
		}
		if !a.alive() && a.cmd.ProcessState != nil && a.cmd.ProcessState.ExitCode() > 0 {
			b, _ := os.ReadFile(a.log)
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			return fmt.Errorf("agent %s exited (%v):\n%s", a.node, a.cmd.ProcessState, b)
		}
	}
	return nil
}

// ---- watching the routes' status ----

// routeState is what the measurement needs of one LBRoute.
type routeState struct {
	generation, observed int64
	programmed           string // the Programmed condition's message
	conditions           int
}

// routeObj is what the watch keeps of an LBRoute.
type routeObj struct {
	metav1.ObjectMeta
	state routeState
}

type routeWatch struct {
	inf cache.SharedIndexInformer
	mu  sync.Mutex
	// changed is closed and replaced on every event.
	changed chan struct{}
}

func newRouteWatch(ctx context.Context, dyn dynamic.Interface) (*routeWatch, error) {
	w := &routeWatch{changed: make(chan struct{})}
	w.inf = dynamicinformer.NewFilteredDynamicInformer(dyn, lbrgen.LBRouteResource, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
	// Keep only what is measured, reduced once per event: the watch must
	// not weigh on the machine (scanning unstructured objects and
	// formatting a message per route on every batch of events cost this
	// tool 6.5 CPU-seconds at 5,000 × 5, 13 % of the machine).
	if err := w.inf.SetTransform(func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil
		}
		return &routeObj{
			ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(),
				Generation: u.GetGeneration(), ResourceVersion: u.GetResourceVersion()},
			state: stateOf(u),
		}, nil
	}); err != nil {
		return nil, err
	}
	kick := func(any) {
		w.mu.Lock()
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
	_, _ = w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(_, n any) { kick(n) }, DeleteFunc: kick})
	go w.inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), w.inf.HasSynced) {
		return nil, ctx.Err()
	}
	return w, nil
}

func stateOf(u *unstructured.Unstructured) routeState {
	st := routeState{generation: u.GetGeneration()}
	st.observed, _, _ = unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	status, _ := u.Object["status"].(map[string]any)
	conds, _ := status["conditions"].([]any) // read in place: NestedSlice copies
	st.conditions = len(conds)
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Programmed" {
			st.programmed, _ = m["message"].(string)
		}
	}
	return st
}

// complete: every condition written for the current generation and the
// leader counts every node as having programmed the route.
func complete(s routeState, nodes int) bool {
	return completeAs(s, programmedOn(nodes))
}

// programmedOn is the leader's Programmed message when all nodes count.
func programmedOn(nodes int) string {
	return fmt.Sprintf("programmed on %d of %d nodes", nodes, nodes)
}

func completeAs(s routeState, programmed string) bool {
	return s.conditions >= 4 && s.observed == s.generation && s.programmed == programmed
}

// waitAll waits until n routes are complete for the node count and returns
// when the first and the last got there, measured from start.
func (w *routeWatch) waitAll(ctx context.Context, n, nodes int, start time.Time, r *run) (first, all time.Duration, timeline []string, err error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastMark := -1
	want := programmedOn(nodes)
	profiled := false
	for {
		w.mu.Lock()
		ch := w.changed
		w.mu.Unlock()
		done := 0
		for _, obj := range w.inf.GetStore().List() {
			if o, ok := obj.(*routeObj); ok && completeAs(o.state, want) {
				done++
			}
		}
		el := time.Since(start)
		if done > 0 && first == 0 {
			first = el
		}
		if mark := done * 10 / max(n, 1); mark != lastMark && done > 0 {
			lastMark = mark
			timeline = append(timeline, fmt.Sprintf("%.1fs:%d", el.Seconds(), done))
		}
		if done >= n {
			return first, el, timeline, nil
		}
		if r.onTenth != nil && !profiled && done*10 >= n {
			profiled = true
			go r.onTenth()
		}
		select {
		case <-ctx.Done():
			return 0, 0, timeline, fmt.Errorf("waiting for %d routes on %d nodes: %d complete after %v: %w", n, nodes, done, el.Round(time.Second), ctx.Err())
		case <-ch:
			time.Sleep(50 * time.Millisecond) // batch the burst of events
		case <-tick.C:
			if err := r.checkAlive(); err != nil {
				return 0, 0, timeline, err
			}
		}
	}
}

func (w *routeWatch) get(key string) (routeState, bool) {
	obj, ok, _ := w.inf.GetStore().GetByKey(key)
	if !ok {
		return routeState{}, false
	}
	o, ok := obj.(*routeObj)
	if !ok {
		return routeState{}, false
	}
	return o.state, true
}

// size is the stored JSON size of one LBRoute (the first one).
func (w *routeWatch) size(ctx context.Context, dyn dynamic.Interface) int {
	o := lbrgen.Options{}
	u, err := dyn.Resource(lbrgen.LBRouteResource).Namespace(o.Namespace(0)).Get(ctx, lbrgen.Name(0), metav1.GetOptions{})
	if err != nil {
		return 0
	}
	b, _ := json.Marshal(u.Object)
	return len(b)
}

// ---- counting writes ----

// apiWrites reads the apiserver's request counters: mutating requests by
// resource (and subresource), with the status code class.
func (r *run) apiWrites(ctx context.Context) (map[string]int, error) {
	raw, err := r.admin.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("apiserver metrics: %w", err)
	}
	fams, err := parseMetrics(raw)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range fams["apiserver_request_total"] {
		verb := m.labels["verb"]
		switch verb {
		case "POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION":
		default:
			continue
		}
		res := m.labels["resource"]
		if sub := m.labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		if !strings.HasPrefix(m.labels["code"], "2") {
			res += " failed"
		}
		out[res] += int(m.value)
	}
	return out, nil
}

type sample struct {
	labels map[string]string
	value  float64
}

func parseMetrics(raw []byte) (map[string][]sample, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := map[string][]sample{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Untyped != nil:
				s.value = m.GetUntyped().GetValue()
			default:
				continue
			}
			out[name] = append(out[name], s)
		}
	}
	return out, nil
}

func diffWrites(now, base map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range now {
		if d := v - base[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// statusWrites sums what the agents write to report status: everything but
// Events, Leases (leader election) and what the bench itself writes
// (LBRoute spec changes).
func statusWrites(w map[string]int) (ok, failed int) {
	for k, v := range w {
		res := strings.TrimSuffix(k, " failed")
		if res == "events" || res == "leases" || res == "lbroutes" || res == "nodes" {
			continue
		}
		if strings.HasSuffix(k, " failed") {
			failed += v
		} else {
			ok += v
		}
	}
	return ok, failed
}

// settle waits until no status write happened for 5 s (the trailing
// writes of the first report count too) and returns the counters.
func (r *run) settle(ctx context.Context) (map[string]int, error) {
	var last map[string]int
	lastN, stable := -1, time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		w, err := r.apiWrites(ctx)
		if err != nil {
			return nil, err
		}
		n, f := statusWrites(w)
		if n+f != lastN {
			lastN, stable, last = n+f, time.Now(), w
		}
		if time.Since(stable) >= 5*time.Second {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return last, nil
}

// ---- footprint ----

// quietFootprint waits -quiet and samples the RSS again: the first sample
// is taken seconds after the burst of status writes, with the apiserver's
// watch cache still holding their history and the collectors not yet
// caught up; this one is what the processes hold when nothing happens.
func (r *run) quietFootprint(ctx context.Context, res *result) error {
	r.log.Info("leaving the cluster alone", "for", r.o.Quiet)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.o.Quiet):
	}
	res.QuietSeconds = r.o.Quiet.Seconds()
	res.QuietAPIServerRSS, _, res.QuietEtcdRSS, res.QuietAgentRSS, _ = r.sampleRSS()
	return nil
}

// sampleRSS reads the current and peak RSS of the apiserver, etcd's
// current RSS, and each full agent's current and peak RSS.
func (r *run) sampleRSS() (api, apiPeak, etcd int64, agents, agentsPeak []int64) {
	api, apiPeak = rss(r.srv.PID("kube-apiserver"))
	etcd, _ = rss(r.srv.PID("etcd"))
	for _, a := range r.agents {
		cur, hwm := rss(a.cmd.Process.Pid)
		agents, agentsPeak = append(agents, cur), append(agentsPeak, hwm)
	}
	return api, apiPeak, etcd, agents, agentsPeak
}

func (r *run) footprint(ctx context.Context, res *result) error {
	res.APIServerRSS, res.APIServerHWM, res.EtcdRSS, res.AgentRSS, res.AgentHWM = r.sampleRSS()
	for _, a := range r.agents {
		res.AgentAnonFile = append(res.AgentAnonFile, rssParts(a.cmd.Process.Pid))
	}
	if len(r.agents) > 0 {
		res.AgentMemStats = memStats(ctx, r.agents[0])
	}
	if r.sim != nil {
		res.SimRSS, _ = rss(r.sim.Process.Pid)
	}
	if fi, err := os.Stat(filepath.Join(r.srv.Dir, "etcd-data", "member", "snap", "db")); err == nil {
		res.EtcdDBFile = fi.Size()
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.srv.EtcdURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	fams, err := parseMetrics(raw)
	if err != nil {
		return err
	}
	for _, s := range fams["etcd_mvcc_db_total_size_in_use_in_bytes"] {
		res.EtcdDBInUse = int64(s.value)
	}
	return nil
}

// cpuSeconds is the user + system CPU time a process used so far.
func cpuSeconds(pid int) float64 {
	user, sys := cpuTimes(pid)
	return user + sys
}

// cpuTimes is the user and the system CPU time a process used so far.
func cpuTimes(pid int) (user, sys float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// The command may hold spaces: fields count from after its ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return ut / 100, st / 100 // USER_HZ
}

// cpuTicks is the first line of /proc/stat: every core's time so far.
type cpuTicks struct{ busy, steal, total float64 }

func machineTimes() cpuTicks {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 {
		return cpuTicks{}
	}
	var t cpuTicks
	for i, v := range f[1:9] {
		x, _ := strconv.ParseFloat(v, 64)
		t.total += x
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			t.steal += x
			t.busy += x
		default:
			t.busy += x
		}
	}
	return t
}

// since is the busy and the stolen share of the machine between two
// readings.
func (t cpuTicks) since(t0 cpuTicks) (busy, steal float64) {
	d := t.total - t0.total
	if d <= 0 {
		return 0, 0
	}
	return (t.busy - t0.busy) / d, (t.steal - t0.steal) / d
}

// rss reads VmRSS and VmHWM (peak) of a process, in bytes.
func rss(pid int) (cur, peak int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			cur = v * 1024
		case "VmHWM:":
			peak = v * 1024
		}
	}
	return cur, peak
}

// profile fetches a pprof profile from url (or, when url starts with "/",
// from the apiserver) into the profiles directory and returns its top.
func (r *run) profile(ctx context.Context, what, url, binary string, extra ...string) string {
	var raw []byte
	var err error
	if strings.HasPrefix(url, "/") {
		path, query, _ := strings.Cut(url, "?")
		req := r.admin.Discovery().RESTClient().Get().AbsPath(path)
		if k, v, ok := strings.Cut(query, "="); ok {
			req = req.Param(k, v)
		}
		raw, err = req.DoRaw(ctx)
	} else {
		var resp *http.Response
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err = http.DefaultClient.Do(req); err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s", resp.Status)
			} else {
				raw, err = io.ReadAll(resp.Body)
			}
		}
	}
	if err != nil {
		return fmt.Sprintf("%s profile from %s: %v", what, url, err)
	}
	dir := "/var/tmp/lbrscale/profiles"
	_ = os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, fmt.Sprintf("%s-%d-%d-%s.pb.gz", r.o.Label, r.o.Routes, time.Now().Unix(), what))
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		return err.Error()
	}
	args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, extra...)
	args = append(args, binary, p)
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("pprof %s: %v: %s", p, err, out)
	}
	return fmt.Sprintf("--- %s (%s)\n%s", what, p, out)
}

func (r *run) agentBinary() string { return filepath.Join(r.o.Tree, "bin", "edgeagent") }

func (r *run) apiserverBinary() string {
	bin := r.o.K8sBin
	if bin == "" {
		bin, _ = apiservertest.BinDir()
	}
	return filepath.Join(bin, "kube-apiserver")
}

// heapProfiles are the agent's and the apiserver's heaps after the first
// report.
// rssParts is "anon+file" of a process's RSS.
func rssParts(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	var anon, file string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "RssAnon:":
			anon = mib(kb * 1024)
		case "RssFile:":
			file = mib(kb * 1024)
		}
	}
	return "anon " + anon + " + file " + file
}

// memStats is the Go runtime's view of agent a's memory (from its heap
// profile's debug text), when it serves /debug/pprof.
func memStats(ctx context.Context, a *agentProc) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:9561/debug/pprof/heap?debug=1", a.addr), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	raw, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		for _, k := range []string{"# HeapAlloc ", "# HeapSys ", "# HeapIdle ", "# HeapInuse ", "# HeapReleased ", "# Stack ", "# Sys ", "# NumGC "} {
			if strings.HasPrefix(line, k) {
				f := strings.Fields(line)
				v, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
				if k == "# NumGC " {
					out = append(out, fmt.Sprintf("NumGC=%d", v))
				} else if k == "# Stack " {
					out = append(out, "Stack="+strings.Join(f[3:], " "))
				} else {
					out = append(out, fmt.Sprintf("%s=%s", strings.TrimSpace(k[2:]), mib(v)))
				}
			}
		}
	}
	return strings.Join(out, " ")
}

func (r *run) heapProfiles(ctx context.Context) string {
	api := r.profile(ctx, "apiserver-heap", "/debug/pprof/heap", r.apiserverBinary(), "-sample_index=inuse_space")
	if len(r.agents) == 0 {
		return api
	}
	a := r.agents[0]
	agent := r.profile(ctx, "agent-heap", fmt.Sprintf("http://%s:9561/debug/pprof/heap", a.addr), r.agentBinary(), "-sample_index=inuse_space")
	return agent + "\n" + api
}

// cpuProfiles are 15 s of the leader's and the apiserver's CPU during the
// first report.
func (r *run) cpuProfiles(ctx context.Context) string {
	lead := r.leader(ctx)
	a := r.agents[0]
	for _, x := range r.agents {
		if x.node == lead {
			a = x
		}
	}
	var wg sync.WaitGroup
	var agent, api string
	wg.Go(func() {
		agent = r.profile(ctx, "leader-cpu", fmt.Sprintf("http://%s:9561/debug/pprof/profile?seconds=15", a.addr), r.agentBinary())
	})
	wg.Go(func() { api = r.profile(ctx, "apiserver-cpu", "/debug/pprof/profile?seconds=15", r.apiserverBinary()) })
	wg.Wait()
	return agent + "\n" + api
}

// ---- after the first report ----

func (r *run) changes(ctx context.Context, w *routeWatch, nodes int, res *result) error {
	gen := lbrgen.Options{Routes: r.o.Routes, Namespaces: r.o.Namespaces, ServiceForm: r.o.ServiceForm}
	sum0, n0 := reconcileTime(ctx, r.agents[0])
	defer func() {
		sum1, n1 := reconcileTime(ctx, r.agents[0])
		if n1 > n0 {
			res.ChangeReconcile = (sum1 - sum0) / float64(n1-n0)
		}
	}()
	if r.o.CPUProfile {
		// Agent 1's CPU while the changes run: what a single change costs.
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			res.ChangeCPUTop = r.profile(ctx, "changes-cpu", fmt.Sprintf("http://%s:9561/debug/pprof/profile?seconds=10", r.agents[0].addr), r.agentBinary())
		})
	}
	for c := range r.o.Changes {
		i := (c*7919 + 13) % r.o.Routes
		ns, name := gen.Namespace(i), lbrgen.Name(i)
		before, err := r.apiWrites(ctx)
		if err != nil {
			return err
		}
		// One real more: every node reprograms the route, and the change
		// shows in every part of its status (the reals counted).
		rt := gen.Route(i)
		reals := append(rt.Spec.RealServers, v1alpha1.RealServer{IP: fmt.Sprintf("10.245.%d.%d", c/250, 1+c%250)})
		body, _ := json.Marshal(map[string]any{"spec": map[string]any{"realServers": reals}})
		patch := string(body)
		t0 := time.Now()
		u, err := r.dyn.Resource(lbrgen.LBRouteResource).Namespace(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if err != nil {
			return fmt.Errorf("change %s/%s: %w", ns, name, err)
		}
		want := u.GetGeneration()
		for {
			st, _ := w.get(ns + "/" + name)
			if st.observed >= want && complete(st, nodes) {
				break
			}
			if time.Since(t0) > time.Minute {
				return fmt.Errorf("change of %s/%s not in status within a minute: %+v", ns, name, st)
			}
			time.Sleep(5 * time.Millisecond)
		}
		res.ChangeLatencies = append(res.ChangeLatencies, time.Since(t0).Seconds())
		now, err := r.settle(ctx)
		if err != nil {
			return err
		}
		n, _ := statusWrites(diffWrites(now, before))
		res.ChangeWrites = append(res.ChangeWrites, n)
	}
	return nil
}

func (r *run) leader(ctx context.Context) string {
	l, err := r.admin.CoordinationV1().Leases("edgeagent-system").Get(ctx, "edgeagent-leader", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// restarts restarts a non-leader, then the leader, and counts the status
// writes each restart caused once the agent has reconciled again.
func (r *run) restarts(ctx context.Context, res *result) error {
	res.RestartWrites = map[string]int{}
	lead := r.leader(ctx)
	var order []*agentProc
	for _, a := range r.agents {
		if a.node != lead {
			order = append(order, a)
			break
		}
	}
	for _, a := range r.agents {
		if a.node == lead {
			order = append(order, a)
		}
	}
	for _, a := range order {
		role := "non-leader"
		if a.node == lead {
			role = "leader"
		}
		before, err := r.apiWrites(ctx)
		if err != nil {
			return err
		}
		a.stop(syscall.SIGTERM)
		r.mu.Lock()
		r.agents = slices.DeleteFunc(r.agents, func(x *agentProc) bool { return x == a })
		r.mu.Unlock()
		if err := r.startAgent(ctx, a.n); err != nil {
			return err
		}
		na := r.agents[len(r.agents)-1]
		if err := waitReconciled(ctx, na); err != nil {
			return err
		}
		if role == "leader" {
			// The Lease was released on SIGTERM: whoever leads now has
			// re-examined every route by the time its writes settle; the
			// wait covers a slow start of that pass.
			for r.leader(ctx) == "" {
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(15 * time.Second)
		}
		now, err := r.settle(ctx)
		if err != nil {
			return err
		}
		res.RestartWrites[role], _ = statusWrites(diffWrites(now, before))
	}
	// Keep the order of r.agents stable by node number for the report.
	sort.Slice(r.agents, func(i, j int) bool { return r.agents[i].n < r.agents[j].n })
	return nil
}

// reconcileTime is the sum and count of an agent's reconciles
// (edgeagent_reconcile_duration_seconds).
func reconcileTime(ctx context.Context, a *agentProc) (float64, int) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+":9560/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return 0, 0
	}
	f := fams["edgeagent_reconcile_duration_seconds"]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, 0
	}
	h := f.GetMetric()[0].GetHistogram()
	return h.GetSampleSum(), int(h.GetSampleCount())
}

// waitReconciled waits until an agent's metrics show a successful
// reconcile and then a few quiet seconds for its report to go out.
func waitReconciled(ctx context.Context, a *agentProc) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+":9560/metrics", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if fams, err := parseMetrics(raw); err == nil {
				for _, s := range fams["edgeagent_reconcile_total"] {
					if s.labels["result"] == "ok" && s.value > 0 {
						time.Sleep(5 * time.Second)
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("agent %s did not reconcile within 5 minutes", a.node)
}

// leave stops the last full agent for good and deletes its Node, as when a
// node is removed from the cluster; it measures until every route counts
// one node less.
func (r *run) leave(ctx context.Context, w *routeWatch, nodes int, res *result) error {
	a := r.agents[len(r.agents)-1]
	if a.node == r.leader(ctx) && len(r.agents) > 1 {
		a = r.agents[len(r.agents)-2]
	}
	before, err := r.apiWrites(ctx)
	if err != nil {
		return err
	}
	a.stop(syscall.SIGTERM)
	t0 := time.Now()
	if err := r.admin.CoreV1().Nodes().Delete(ctx, a.node, metav1.DeleteOptions{}); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	_, all, _, err := w.waitAll(wctx, r.o.Routes, nodes-1, t0, r)
	if err != nil {
		res.LeaveNote = fmt.Sprintf("not pruned within 3 minutes (%v)", err)
	} else {
		res.LeaveSeconds = all.Seconds()
	}
	now, err := r.settle(ctx)
	if err != nil {
		return err
	}
	res.LeaveWrites, _ = statusWrites(diffWrites(now, before))
	return nil
}

// ---- output ----

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func printResult(out io.Writer, res *result) {
	maxRSS, maxHWM := int64(0), int64(0)
	for i := range res.AgentRSS {
		maxRSS, maxHWM = max(maxRSS, res.AgentRSS[i]), max(maxHWM, res.AgentHWM[i])
	}
	nodes := fmt.Sprintf("%d", res.Agents)
	if res.Sim > 0 {
		nodes = fmt.Sprintf("%d + %d sim", res.Agents, res.Sim)
	}
	form := ""
	if res.ServiceForm {
		form = " (Services + EndpointSlices)"
	}
	fmt.Fprintf(out, "| N routes × K agents | until every LBRoute is programmed on all K nodes | status writes, first report | etcd db (file / in use) | apiserver RSS (peak) | agent RSS (peak) |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(out, "| %d × %s%s %s | %.1f s | %d | %s / %s | %s (%s) | %s (%s) |\n",
		res.Routes, nodes, form, res.Label, res.Complete, res.StatusWrites,
		mib(res.EtcdDBFile), mib(res.EtcdDBInUse), mib(res.APIServerRSS), mib(res.APIServerHWM), mib(maxRSS), mib(maxHWM))
	var keys []string
	for k := range res.Writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ws []string
	for _, k := range keys {
		ws = append(ws, fmt.Sprintf("%s=%d", k, res.Writes[k]))
	}
	fmt.Fprintf(out, "writes by resource: %s\n", strings.Join(ws, " "))
	fmt.Fprintf(out, "first route complete after %.1f s; timeline %s\n", res.FirstComplete, strings.Join(res.CompleteTimeline, " "))
	fmt.Fprintf(out, "CPU during the first report: apiserver %.1f s, etcd %.1f s, agents %.1f s, %.1f s of it in the kernel (%.1f ms of apiserver per status write); this harness %.1f s; machine %.0f %% busy, %.0f %% stolen\n",
		res.APIServerCPU, res.EtcdCPU, res.AgentsCPU, res.AgentsSysCPU, 1000*res.APIServerCPU/float64(max(res.StatusWrites, 1)),
		res.HarnessCPU, 100*res.MachineBusy, 100*res.MachineSteal)
	fmt.Fprintf(out, "agent RSS parts: %s; agent 1 runtime: %s\n", strings.Join(res.AgentAnonFile, ", "), res.AgentMemStats)
	fmt.Fprintf(out, "LBRoute object %d bytes; etcd RSS %s", res.LBRouteBytes, mib(res.EtcdRSS))
	if res.SimRSS > 0 {
		fmt.Fprintf(out, "; simnode process RSS %s (%d nodes)", mib(res.SimRSS), res.Sim)
	}
	fmt.Fprintln(out)
	if res.QuietSeconds > 0 {
		var agents []string
		for _, v := range res.QuietAgentRSS {
			agents = append(agents, mib(v))
		}
		fmt.Fprintf(out, "after %.0f s quiet: apiserver %s + etcd %s = %s; agents %s\n", res.QuietSeconds,
			mib(res.QuietAPIServerRSS), mib(res.QuietEtcdRSS), mib(res.QuietAPIServerRSS+res.QuietEtcdRSS), strings.Join(agents, ", "))
	}
	if len(res.ChangeLatencies) > 0 {
		fmt.Fprintf(out, "single change → status on every node: %s s; writes each: %v; agent 1's reconcile of all routes meanwhile: %.3f s on average\n",
			fmtFloats(res.ChangeLatencies), res.ChangeWrites, res.ChangeReconcile)
	}
	if res.RestartWrites != nil {
		fmt.Fprintf(out, "restart writes: %v\n", res.RestartWrites)
	}
	if res.JoinSeconds > 0 {
		fmt.Fprintf(out, "one more agent joins: %.1f s until every route counts it, %d status writes\n", res.JoinSeconds, res.JoinWrites)
	}
	if res.LeaveSeconds > 0 || res.LeaveNote != "" {
		fmt.Fprintf(out, "a node leaves: %.1f s until every route counts one less, %d status writes %s\n", res.LeaveSeconds, res.LeaveWrites, res.LeaveNote)
	}
	if res.HeapTop != "" {
		fmt.Fprintln(out, res.HeapTop)
	}
	if res.CPUTop != "" {
		fmt.Fprintln(out, res.CPUTop)
	}
	if res.StartCPUTop != "" {
		fmt.Fprintln(out, res.StartCPUTop)
	}
	if res.ChangeCPUTop != "" {
		fmt.Fprintln(out, res.ChangeCPUTop)
	}
	fmt.Fprintf(out, "load average at the end: %s; commit %s\n", res.Load, res.Commit)
}

// printTable prints every run of a results file as one row of the table
// docs/benchmarks/kube.md shows, then what the runs measured after the
// first report.
func printTable(out io.Writer, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var rows []result
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		rows = append(rows, r)
	}
	fmt.Fprintln(out, "| run | N routes × K agents | until every LBRoute is programmed on all K nodes | status writes, first report | etcd db (file / in use) | apiserver RSS (peak) | etcd RSS | agent RSS, largest (peak) | load avg |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		maxRSS, maxHWM := int64(0), int64(0)
		for i := range r.AgentRSS {
			maxRSS, maxHWM = max(maxRSS, r.AgentRSS[i]), max(maxHWM, r.AgentHWM[i])
		}
		nodes := fmt.Sprint(r.Agents)
		if r.Sim > 0 {
			nodes = fmt.Sprintf("(%d + %d light)", r.Agents, r.Sim)
		}
		form := ""
		if r.ServiceForm {
			form = ", service form"
		}
		agent := fmt.Sprintf("%s (%s)", mib(maxRSS), mib(maxHWM))
		if r.Sim > 0 {
			agent += fmt.Sprintf("; light agents %s for %d", mib(r.SimRSS), r.Sim)
		}
		fmt.Fprintf(out, "| %s | %d × %s%s | %.1f s | %d | %s / %s | %s (%s) | %s | %s | %s |\n", r.Label, r.Routes, nodes, form,
			r.Complete, r.StatusWrites, mib(r.EtcdDBFile), mib(r.EtcdDBInUse), mib(r.APIServerRSS), mib(r.APIServerHWM),
			mib(r.EtcdRSS), agent, r.Load)
	}
	for _, r := range rows {
		var parts []string
		if len(r.ChangeLatencies) > 0 {
			parts = append(parts, fmt.Sprintf("single change → status: %s s (writes %v; reconcile of all routes %.3f s)", fmtFloats(r.ChangeLatencies), r.ChangeWrites, r.ChangeReconcile))
		}
		if r.RestartWrites != nil {
			parts = append(parts, fmt.Sprintf("restart writes: non-leader %d, leader %d", r.RestartWrites["non-leader"], r.RestartWrites["leader"]))
		}
		if r.JoinSeconds > 0 {
			parts = append(parts, fmt.Sprintf("one more agent joins: %.1f s, %d writes", r.JoinSeconds, r.JoinWrites))
		}
		if r.LeaveSeconds > 0 {
			parts = append(parts, fmt.Sprintf("a node leaves: %.1f s, %d writes", r.LeaveSeconds, r.LeaveWrites))
		} else if r.LeaveNote != "" {
			parts = append(parts, "a node leaves: "+r.LeaveNote+fmt.Sprintf(", %d writes", r.LeaveWrites))
		}
		if len(parts) > 0 {
			fmt.Fprintf(out, "- %s (%d × %d): %s\n", r.Label, r.Routes, r.Agents, strings.Join(parts, "; "))
		}
	}
	return nil
}

func fmtFloats(fs []float64) string {
	var s []string
	for _, f := range fs {
		s = append(s, fmt.Sprintf("%.2f", f))
	}
	return strings.Join(s, ", ")
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func gitCommit(dir string) string {
	if b, err := os.ReadFile(filepath.Join(dir, "COMMIT")); err == nil {
		return strings.TrimSpace(string(b))
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}
