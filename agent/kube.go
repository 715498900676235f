package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/kubestatus"
	"github.com/arraynetworks/edgeagent/version"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeParts is the Kubernetes side of an agent: the source, the status
// Reporter, the apiserver connection monitor and the loops beside them
// (status writing; leader election running the auto-LBRoute controller and
// the route-wide status while this agent leads).
type kubeParts struct {
	source  *watcher.Kube
	status  *kubestatus.Writer
	monitor *healthcheck.APIServerMonitor
	loops   []func(ctx context.Context) error
	// leading is true while this agent holds the Lease (the APV driver's
	// MayWrite). onLead, set before the loops start, runs at the start of
	// each term.
	leading *atomic.Bool
	onLead  func()
}

func buildKube(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*kubeParts, error) {
	var rc *rest.Config
	var err error
	if cfg.Source.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Resolve(cfg.Source.Kubeconfig))
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("apiserver config (source.kubeconfig %q): %w", cfg.Source.Kubeconfig, err)
	}
	rc.UserAgent = "edgeagent/" + version.String()
	if c := cfg.APIServer.Compression; c == nil || !*c {
		rc.DisableCompression = true
	}
	// Status writes have their own, tighter limit (kubernetes.statusQPS);
	// this one leaves room for the rest beside them (leader election,
	// auto-LBRoute, Events). The apiserver's flow control (the shipped
	// FlowSchema) is what protects it.
	rc.QPS = float32(cfg.Kubernetes.StatusQPS) + 50
	rc.Burst = cfg.Kubernetes.StatusBurst + 100
	mon := healthcheck.NewAPIServerMonitor(reg, healthcheck.APIServerOptions{
		ReadIdleTimeout: cfg.APIServer.ReadIdleTimeout.Duration,
		PingTimeout:     cfg.APIServer.PingTimeout.Duration,
	})
	if rc, err = mon.Configure(rc); err != nil {
		return nil, err
	}
	selector := ""
	if cfg.BGP.NodePeers != nil {
		selector = cfg.BGP.NodePeers.LabelSelector
	}
	k, err := watcher.NewKube(watcher.KubeOptions{
		Config: rc, NodeName: cfg.NodeName, NodePeerSelector: selector, Observer: mon,
		Logger: log.With("component", "source"),
	})
	if err != nil {
		return nil, err
	}
	sw, err := kubestatus.New(k, kubestatus.Options{
		NodeName: cfg.NodeName, QPS: cfg.Kubernetes.StatusQPS, Burst: cfg.Kubernetes.StatusBurst,
		Advertises:       cfg.BGP.Enabled == nil || *cfg.BGP.Enabled,
		NeighborStatus:   cfg.Kubernetes.NeighborStatus != nil && *cfg.Kubernetes.NeighborStatus,
		NeighborInterval: cfg.Kubernetes.NeighborStatusInterval.Duration,
		Registerer:       reg, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	var auto *watcher.AutoLBRoute
	if cfg.Kubernetes.AutoLBRoute == nil || *cfg.Kubernetes.AutoLBRoute {
		if auto, err = watcher.NewAutoLBRoute(k, watcher.AutoOptions{Pools: cfg.Pools(), NodeName: cfg.NodeName, Logger: log}); err != nil {
			return nil, err
		}
	}
	kp := &kubeParts{source: k, status: sw, monitor: mon, leading: new(atomic.Bool)}
	lead := func(ctx context.Context) {
		kp.leading.Store(true)
		defer kp.leading.Store(false)
		if kp.onLead != nil {
			kp.onLead()
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := sw.Lead(ctx); err != nil {
				log.Error("LBRoute status (leader) stopped", "err", err)
			}
		})
		if auto != nil {
			_ = auto.Run(ctx)
		}
		// The term lasts until the Lease is lost, even if the controller
		// stopped early: the APV writer and route-wide status go with it.
		<-ctx.Done()
		wg.Wait()
	}
	kp.loops = []func(ctx context.Context) error{
		sw.Run,
		func(ctx context.Context) error {
			return watcher.RunLeaderElection(ctx, watcher.LeaderOptions{
				Client: k.Client, Namespace: cfg.Kubernetes.Namespace, Identity: cfg.NodeName, Logger: log,
			}, lead)
		},
	}
	return kp, nil
}
