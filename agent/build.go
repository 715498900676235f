package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/bgp"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/prometheus/client_golang/prometheus"
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

// FromConfig builds the agent and its components from cfg (defaults applied
// and validated).
func FromConfig(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*Built, error) {
	opts := Options{Config: cfg, Logger: log, Registerer: reg}
	b := &Built{Stop: func(context.Context) error { return nil }}

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
		return nil, errors.New("source.dir is empty and the Kubernetes source is not available in this build")
	}

	ap, err := buildAPV(cfg, log, reg)
	if err != nil {
		return nil, errComponent("apv", err)
	}
	if ap != nil {
		opts.Appliance = ap
		b.Loops = append(b.Loops, ap.Run)
	}

	// BGP starts last: it opens a listener and, once the first Announce
	// comes, sessions; nothing after it may fail.
	if cfg.BGP.Enabled == nil || *cfg.BGP.Enabled {
		sp, err := startSpeaker(ctx, cfg, log, reg)
		if err != nil {
			return nil, errComponent("bgp", err)
		}
		opts.Speaker = sp
		withdraw := cfg.BGP.WithdrawOnExit
		b.Stop = func(ctx context.Context) error { return sp.Stop(ctx, withdraw) }
	}

	b.Agent = New(opts)
	return b, nil
}

// The BGP speaker is the agent's Speaker.
var _ Speaker = (*bgp.Speaker)(nil)

// startSpeaker builds and starts the BGP speaker. Learned routes go into
// the kernel of the agent's own network namespace with the agent's route
// protocol. Sessions open at the first Announce (after the source synced).
func startSpeaker(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*bgp.Speaker, error) {
	bcfg, peers, err := bgp.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	sp, err := bgp.New(bcfg, bgp.Options{
		Routes:     dataplane.NewRouteTable(nil),
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

// errComponent wraps a component construction error.
func errComponent(name string, err error) error { return fmt.Errorf("build %s: %w", name, err) }

// Cleanup removes everything the agent created on the node. It is
// idempotent.
func Cleanup(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("cleanup: nothing to remove yet: the dataplane is not part of this build")
	return nil
}
