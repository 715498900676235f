// Command simnode runs many lightweight edge agents in one process, to
// measure LBRoute status with more edge nodes than the machine can hold as
// full agents (hack/bench/lbrscale -sim). Each is the real agent built from
// a config (its own Kubernetes source and informers, its own connection,
// status writer and leader election, its own reconcile loop), with BGP off
// and the kernel dataplane replaced by one that programs nothing and says
// every virtual service is in place: what the apiserver sees of it is what
// it would see of a full agent whose kernel never fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // -pprof: heap profiles of the simulated nodes
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/arraynetworks/edgeagent/agent"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/prometheus/client_golang/prometheus"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the agents (the edgeagent ServiceAccount)")
	count := flag.Int("count", 50, "simulated edge nodes")
	prefix := flag.String("prefix", "sim-", "node names are <prefix>000, <prefix>001, ...")
	namespace := flag.String("namespace", "edgeagent-system", "where the leader-election Lease lives")
	pool := flag.String("vip-pool", "10.200.0.0/16", "the agents' vipPool")
	qps := flag.Float64("status-qps", 0, "kubernetes.statusQPS (0: the default)")
	stagger := flag.Duration("stagger", 20*time.Millisecond, "pause between two nodes' starts")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *pprofAddr != "" {
		go func() { log.Error("pprof", "err", http.ListenAndServe(*pprofAddr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var wg sync.WaitGroup
	for i := range *count {
		cfg := config.Default()
		cfg.NodeName = fmt.Sprintf("%s%03d", *prefix, i)
		cfg.Source.Kubeconfig = *kubeconfig
		cfg.VIPPools = []config.VIPPool{{CIDR: *pool}}
		off := false
		cfg.BGP.Enabled = &off
		cfg.Kubernetes.Namespace = *namespace
		cfg.Kubernetes.NeighborStatus = &off
		cfg.Kubernetes.StatusQPS = *qps
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			fmt.Fprintln(os.Stderr, "simnode:", err)
			os.Exit(1)
		}
		b, err := agent.FromConfig(ctx, cfg, log.With("node", cfg.NodeName), prometheus.NewRegistry(), agent.WithDataplane(&nullDataplane{}))
		if err != nil {
			fmt.Fprintln(os.Stderr, "simnode:", err)
			os.Exit(1)
		}
		wg.Go(func() {
			if err := b.Run(ctx); err != nil {
				log.Error("simulated node failed", "node", cfg.NodeName, "err", err)
			}
		})
		time.Sleep(*stagger)
	}
	fmt.Fprintf(os.Stderr, "simnode: %d nodes running\n", *count)
	wg.Wait()
}

// nullDataplane programs nothing and reports every service programmed.
type nullDataplane struct {
	mu   sync.Mutex
	prog map[string]bool
	at   time.Time
}

func (d *nullDataplane) Reconcile(_ context.Context, s model.State) error {
	prog := make(map[string]bool, len(s.Services))
	for i := range s.Services {
		prog[s.Services[i].Key()] = true
	}
	d.mu.Lock()
	d.prog, d.at = prog, time.Now()
	d.mu.Unlock()
	return nil
}

func (d *nullDataplane) Programmed() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.prog
}

func (d *nullDataplane) Rejected() map[string]error { return nil }

func (d *nullDataplane) Status() dataplane.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return dataplane.Status{Interface: "simulated", Rules: len(d.prog), LastSync: d.at}
}
