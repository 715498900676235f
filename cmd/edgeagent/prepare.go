package main

import (
	"fmt"
	"slices"

	"github.com/arraynetworks/edgeagent/dataplane"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/spf13/cobra"
)

// newPrepareNodeCommand is `edgeagent prepare-node`: what the agent needs
// from the node but may not do itself when it runs unprivileged. The
// DaemonSet runs it as a short privileged init container, so the agent's own
// container keeps only NET_ADMIN and NET_RAW (with them /proc/sys stays
// read-only inside a container).
func newPrepareNodeCommand() *cobra.Command {
	var configFile string
	var ipv6 bool
	var ov overrides
	cmd := &cobra.Command{
		Use:   "prepare-node",
		Short: "Set the node's forwarding sysctls the dataplane needs (run privileged, before the agent)",
		Long: `prepare-node switches on net.ipv4.ip_forward and, when the configuration has
an IPv6 VIP pool (or --ipv6 is given), net.ipv6.conf.all.forwarding, in the
network namespace it runs in (the node's, with hostNetwork). It changes
nothing that is already set, and says what it changed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configFile, cmd.Flags(), &ov)
			if err != nil {
				return err
			}
			log := newLogger(cfg.LogLevel, cfg.LogFormat)
			if !ipv6 {
				ipv6 = slices.ContainsFunc(cfg.Pools(), func(p model.Pool) bool { return p.CIDR.Addr().Is6() })
			}
			before, err := dataplane.PrepareNode(cmd.Context(), ipv6)
			for name, v := range before {
				if v == "1" {
					log.Info("sysctl already set", "name", name, "value", v)
				} else {
					log.Info("sysctl set", "name", name, "value", "1", "was", v)
				}
			}
			if err != nil {
				return fmt.Errorf("prepare-node: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "config file (IPv6 VIP pools switch on IPv6 forwarding)")
	cmd.Flags().BoolVar(&ipv6, "ipv6", false, "also switch on IPv6 forwarding")
	ov.register(cmd.Flags())
	return cmd
}
