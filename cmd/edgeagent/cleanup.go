package main

import (
	"os/signal"
	"syscall"

	"github.com/arraynetworks/edgeagent/agent"
	"github.com/spf13/cobra"
)

func newCleanupCommand() *cobra.Command {
	var configFile string
	var wait bool
	var ov overrides
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove everything the agent created on this node (VIP interface, EDGE- chains, its routes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configFile, cmd.Flags(), &ov)
			if err != nil {
				return err
			}
			log := newLogger(cfg.LogLevel, cfg.LogFormat)
			if err := agent.Cleanup(cmd.Context(), cfg, log); err != nil {
				return err
			}
			if wait {
				// As a DaemonSet's container (deploy/cleanup): stay
				// up, so a rollout shows every node done, until
				// the DaemonSet is deleted.
				log.Info("cleanup done; waiting for SIGTERM")
				ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
				defer stop()
				<-ctx.Done()
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "config file (for the VIP interface name)")
	cmd.Flags().BoolVar(&wait, "wait", false, "after cleaning, wait for SIGTERM (to run as a DaemonSet on every node)")
	ov.register(cmd.Flags())
	return cmd
}
