package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/apv"
	"github.com/arraynetworks/edgeagent/bgp"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/healthcheck"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Built is an agent assembled from a configuration, with what must run
// beside it and what must happen when it stops.
type Built struct {
	Agent *Agent
	// Background loops of components (BGP server, APV sync) that run for as
	// long as the agent does.
	Loops []func(ctx context.Context) error
	// Stop shuts the components down after Run returns (BGP graceful
	// restart or withdraw, ...). It is given a fresh context with a
	// deadline.
	Stop func(ctx context.Context) error
}

// Run runs the agent and every background loop until ctx ends or one of
// them fails for good; then it cancels the rest, waits for all of them and
// returns the first failure (nil after a plain cancellation). Components are
// not stopped: call Stop after Run returns.
func (b *Built) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	fail := func(err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			cancel(err)
		}
	}
	for _, loop := range b.Loops {
		wg.Go(func() { fail(loop(ctx)) })
	}
	wg.Go(func() { fail(b.Agent.Run(ctx)) })
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// BuildOption adjusts how FromConfig builds components.
type BuildOption func(*buildOptions) error

type buildOptions struct {
	dataplane dataplane.Options
	// replaced, when set, stands in for the kernel dataplane.
	replaced Dataplane
}

// WithDataplane replaces the kernel dataplane with d: for benchmarks that
// simulate many edge nodes in one process (hack/bench/simnode), where
// everything but the kernel is the agent's own. BGP must be off: the
// speaker installs what it learns through the kernel dataplane.
func WithDataplane(d Dataplane) BuildOption {
	return func(o *buildOptions) error {
		o.replaced = d
		return nil
	}
}

// WithNetns makes the dataplane program network namespace name (as created
// by `ip netns add`) instead of the process's own: for tests that build the
// agent in-process. The agent binary itself runs under `ip netns exec`.
func WithNetns(name string) BuildOption {
	return func(o *buildOptions) error {
		fd, err := netns.GetFromName(name)
		if err != nil {
			return fmt.Errorf("open netns %s: %w", name, err)
		}
		defer fd.Close()
		h, err := netlink.NewHandleAt(fd)
		if err != nil {
			return fmt.Errorf("netlink in %s: %w", name, err)
		}
		o.dataplane.Netlink = h
		o.dataplane.CommandPrefix = []string{"ip", "netns", "exec", name}
		return nil
	}
}

// FromConfig builds the agent and its components from cfg (defaults applied
// and validated).
func FromConfig(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer, options ...BuildOption) (*Built, error) {
	var bo buildOptions
	for _, o := range options {
		if err := o(&bo); err != nil {
			return nil, err
		}
	}
	opts := Options{Config: cfg, Logger: log, Registerer: reg}
	b := &Built{Stop: func(context.Context) error { return nil }}

	var kp *kubeParts // nil in standalone mode
	if cfg.Standalone() {
		pools := cfg.Pools()
		src, err := watcher.NewFileSource(watcher.FileOptions{
			Dir: cfg.Resolve(cfg.Source.Dir),
			Validate: func(rt *v1alpha1.LBRoute) model.Problems {
				return translate.Route(rt, translate.Options{Pools: pools}).Problems
			},
			Ignore:     []string{cfg.File()},
			Logger:     log.With("component", "source"),
			Registerer: reg,
		})
		if err != nil {
			return nil, err
		}
		opts.Source, opts.Mode = src, "standalone"
	} else {
		var err error
		kp, err = buildKube(cfg, log, reg)
		if err != nil {
			return nil, errComponent("kubernetes source", err)
		}
		opts.Source, opts.Reporter, opts.Mode = kp.source, kp.status, "kubernetes"
		opts.APIServer = kp.monitor.Status
		opts.NodeEvent = nodeEvents(kp.status.Recorder(), cfg.NodeName)
		b.Loops = append(b.Loops, kp.loops...)
	}

	var dp *dataplane.Dataplane
	if bo.replaced != nil {
		if cfg.BGP.Enabled == nil || *cfg.BGP.Enabled {
			return nil, fmt.Errorf("a replaced dataplane needs bgp.enabled: false")
		}
		opts.Dataplane = bo.replaced
	} else {
		dpo := bo.dataplane
		dpo.Interface, dpo.Masquerade = cfg.Dataplane.VIPInterface, *cfg.Dataplane.Masquerade
		dpo.Logger, dpo.Registerer = log, reg
		dpo.RouteMetric = cfg.BGP.ImportMetric
		mode, err := dataplane.ParseIPTablesMode(cfg.Dataplane.IPTablesMode)
		if err != nil {
			return nil, errComponent("dataplane", fmt.Errorf("dataplane.iptablesMode: %w", err))
		}
		dpo.IPTablesMode = mode
		if dpo.Backend, err = dataplane.ParseBackend(cfg.Dataplane.Backend); err != nil {
			return nil, errComponent("dataplane", fmt.Errorf("dataplane.backend: %w", err))
		}
		dp = dataplane.New(dpo)
		opts.Dataplane = dp
	}

	var apo apv.Options
	if kp != nil {
		// Every agent reads and scans the devices; only the leader writes.
		apo.MayWrite = kp.leading.Load
		apo.Events = kubeEvents(kp.status.Recorder(), cfg.NodeName, log.With("component", "apv"))
	}
	ap, apLoops, err := buildAPV(cfg, log, reg, apo)
	if err != nil {
		return nil, errComponent("apv", err)
	}
	if ap != nil {
		opts.Appliance = ap
		b.Loops = append(b.Loops, apLoops...)
		if kp != nil {
			// A new leader syncs at once: the device may hold what the
			// previous one wrote or not, and the diff settles it.
			kp.onLead = ap.Kick
		}
	}

	opts.Prober = healthcheck.New(healthcheck.Options{
		Concurrency: cfg.HealthCheck.Concurrency,
		Logger:      log.With("component", "healthcheck"),
		Registerer:  reg,
	})

	// BGP starts last: it opens a listener and, once the first Announce
	// comes, sessions; nothing after it may fail.
	if cfg.BGP.Enabled == nil || *cfg.BGP.Enabled {
		sp, err := startSpeaker(ctx, cfg, dp.Routes(), log, reg)
		if err != nil {
			return nil, errComponent("bgp", err)
		}
		opts.Speaker = sp
		withdraw := cfg.BGP.WithdrawOnExit
		b.Stop = func(ctx context.Context) error { return sp.Stop(ctx, withdraw) }
	}

	b.Agent = New(opts)
	if iv := cfg.Dataplane.ResyncInterval.Duration; iv > 0 && dp != nil {
		b.Loops = append(b.Loops, func(ctx context.Context) error {
			return resyncLoop(ctx, iv, dp, b.Agent)
		})
	}
	return b, nil
}

// The BGP speaker is the agent's Speaker.
var _ Speaker = (*bgp.Speaker)(nil)

// startSpeaker builds and starts the BGP speaker. Learned routes go into
// the dataplane's kernel (routes) with the agent's route protocol. Sessions
// open at the first Announce (after the source synced).
func startSpeaker(ctx context.Context, cfg *config.Config, routes bgp.RouteInstaller, log *slog.Logger, reg prometheus.Registerer) (*bgp.Speaker, error) {
	bcfg, peers, err := bgp.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	sp, err := bgp.New(bcfg, bgp.Options{
		Routes:     routes,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	if err := sp.Start(ctx, peers); err != nil {
		return nil, err
	}
	return sp, nil
}

// resyncLoop makes the dataplane re-read the kernel now and then, so rules
// or addresses someone else removed (a flushed nat table, a deleted VIP)
// are put back within one interval instead of at the next change.
func resyncLoop(ctx context.Context, every time.Duration, dp *dataplane.Dataplane, a *Agent) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			dp.Resync()
			a.Trigger()
		}
	}
}

// errComponent wraps a component construction error.
func errComponent(name string, err error) error { return fmt.Errorf("build %s: %w", name, err) }

// Cleanup removes everything the agent created on the node. It is
// idempotent.
func Cleanup(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	mode, err := dataplane.ParseIPTablesMode(cfg.Dataplane.IPTablesMode)
	if err != nil {
		return fmt.Errorf("cleanup: dataplane.iptablesMode: %w", err)
	}
	backend, err := dataplane.ParseBackend(cfg.Dataplane.Backend)
	if err != nil {
		return fmt.Errorf("cleanup: dataplane.backend: %w", err)
	}
	// Whichever backend is configured, Cleanup removes both backends'
	// objects: a node may hold the other one's from before a switch.
	dp := dataplane.New(dataplane.Options{Interface: cfg.Dataplane.VIPInterface, IPTablesMode: mode, Backend: backend, Logger: log})
	if err := dp.Cleanup(ctx); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	log.Info("cleanup done: VIP interface, EDGE- chains, table inet edgeagent and the agent's routes removed", "interface", cfg.Dataplane.VIPInterface)
	return nil
}
