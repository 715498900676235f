package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/arraynetworks/edgeagent/admin"
	"github.com/arraynetworks/edgeagent/agent"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/metrics"
	"github.com/arraynetworks/edgeagent/version"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRunCommand() *cobra.Command {
	var configFile string
	var ov overrides
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configFile, cmd.Flags(), &ov)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "config file (YAML); flags override its fields")
	ov.register(cmd.Flags())
	return cmd
}

// loadConfig reads the file (if any), applies changed flags over it, then
// defaults, then validates.
func loadConfig(file string, fs *pflag.FlagSet, ov *overrides) (*config.Config, error) {
	cfg := config.Default()
	if file != "" {
		var err error
		if cfg, err = config.Load(file); err != nil {
			return nil, err
		}
	}
	if err := ov.apply(fs, cfg); err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}
	return cfg, nil
}

func run(parent context.Context, cfg *config.Config) error {
	log := newLogger(cfg.LogLevel, cfg.LogFormat)
	log.Info("starting edgeagent", "version", version.String(), "node", cfg.NodeName)

	ctx, stop := signal.NotifyContext(parent, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := metrics.NewRegistry()
	built, err := agent.FromConfig(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	waitAdmin, err := admin.Serve(ctx, cfg.AdminAddress, admin.Handler(built.Agent.Status), log.With("server", "admin"))
	if err != nil {
		return err
	}
	waitMetrics, err := admin.Serve(ctx, cfg.MetricsAddress, metrics.Handler(reg), log.With("server", "metrics"))
	if err != nil {
		return err
	}

	runErr := built.Run(ctx)
	if runErr != nil {
		log.Error("agent failed", "err", runErr)
	} else {
		log.Info("shutting down", "cause", context.Cause(ctx))
	}
	// The admin and metrics servers run on ctx: end it also when the agent
	// failed on its own, or they would keep the process alive.
	stop()

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := built.Stop(sctx); err != nil {
		log.Error("stop components", "err", err)
		runErr = errors.Join(runErr, err)
	}
	if err := errors.Join(waitAdmin(), waitMetrics()); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if runErr == nil {
		log.Info("stopped")
	}
	_ = os.Stderr.Sync()
	return runErr
}
