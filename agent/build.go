package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/config"
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

	b.Agent = New(opts)
	return b, nil
}

// errComponent wraps a component construction error.
func errComponent(name string, err error) error { return fmt.Errorf("build %s: %w", name, err) }

// Cleanup removes everything the agent created on the node. It is
// idempotent.
func Cleanup(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("cleanup: nothing to remove yet: the dataplane is not part of this build")
	return nil
}
