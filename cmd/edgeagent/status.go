package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/status"
	"github.com/spf13/cobra"
)

func newStatusCommand() *cobra.Command {
	var output, addr, configFile string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show neighbors, virtual services and the apiserver connection of a running agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("admin-address") && configFile != "" {
				cfg, err := config.Load(configFile)
				if err != nil {
					return err
				}
				cfg.ApplyDefaults()
				addr = cfg.AdminAddress
			}
			raw, rep, err := fetchStatus(addr)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			case "table", "":
				return status.WriteTable(cmd.OutOrStdout(), rep)
			default:
				return fmt.Errorf("-o %q: want json or table", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "json or table")
	cmd.Flags().StringVar(&addr, "admin-address", config.DefaultAdminAddress, "the agent's admin address")
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "read the admin address from this config file")
	return cmd
}

func fetchStatus(addr string) ([]byte, status.Report, error) {
	var rep status.Report
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, rep, fmt.Errorf("admin address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/status"
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, rep, fmt.Errorf("is the agent running? %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, rep, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, rep, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, rep, fmt.Errorf("decode status: %w", err)
	}
	return raw, rep, nil
}
