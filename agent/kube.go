package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/healthcheck"
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
	status  *watcher.StatusWriter
	monitor *healthcheck.APIServerMonitor
	loops   []func(ctx context.Context) error
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
	rc.QPS, rc.Burst = 50, 100
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
	sw, err := watcher.NewStatusWriter(k, watcher.StatusOptions{
		NodeName: cfg.NodeName, QPS: cfg.Kubernetes.StatusQPS, Burst: cfg.Kubernetes.StatusBurst,
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
	lead := func(ctx context.Context) {
		sw.SetLeader(true)
		defer sw.SetLeader(false)
		if auto != nil {
			_ = auto.Run(ctx)
			return
		}
		<-ctx.Done()
	}
	return &kubeParts{
		source: k, status: sw, monitor: mon,
		loops: []func(ctx context.Context) error{
			sw.Run,
			func(ctx context.Context) error {
				return watcher.RunLeaderElection(ctx, watcher.LeaderOptions{
					Client: k.Client, Namespace: cfg.Kubernetes.Namespace, Identity: cfg.NodeName, Logger: log,
				}, lead)
			},
		},
	}, nil
}
