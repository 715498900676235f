package main

import (
	"github.com/arraynetworks/edgeagent/agent"
	"github.com/spf13/cobra"
)

func newCleanupCommand() *cobra.Command {
	var configFile string
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
			return agent.Cleanup(cmd.Context(), cfg, newLogger(cfg.LogLevel, cfg.LogFormat))
		},
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "config file (for the VIP interface name)")
	ov.register(cmd.Flags())
	return cmd
}
