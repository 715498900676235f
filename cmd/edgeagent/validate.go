package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/config"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/arraynetworks/edgeagent/translate"
	"github.com/arraynetworks/edgeagent/watcher"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

func newValidateCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check LBRoute files (and agent config files) offline, as the agent would",
		Long: `Checks every LBRoute document the way the agent does: decoding (unknown
fields are errors), field validation, VIP pools and (vip, port, protocol)
conflicts across all files given. Agent config files among FILE are
validated too, and their vipPools apply to the LBRoutes; without one (or
--config) the VIP pool check is skipped.

Prints "file: namespace/name: field: reason" per problem and exits 1, or a
one-line summary and exits 0.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			out := cmd.OutOrStdout()
			var pools []model.Pool
			havePools := false
			if configFile != "" {
				cfg, err := config.Load(configFile)
				if err != nil {
					return err
				}
				pools, havePools = cfg.Pools(), true
			}
			var problems []string
			var routes []*v1alpha1.LBRoute
			origin := map[string]string{}
			configs := 0
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v", f, err))
					continue
				}
				if isAgentConfig(data) {
					configs++
					cfg, err := config.Parse(data)
					if err == nil {
						cfg.ApplyDefaults()
						err = cfg.Validate()
					}
					if err != nil {
						for _, line := range strings.Split(err.Error(), "\n") {
							problems = append(problems, fmt.Sprintf("%s: config: %s", f, line))
						}
						continue
					}
					if !havePools {
						pools = append(pools, cfg.Pools()...)
					}
					continue
				}
				for _, d := range watcher.Decode(data, watcher.DefaultNamespace) {
					if d.Err != nil {
						problems = append(problems, fmt.Sprintf("%s: document %d: %v", f, d.Index, d.Err))
						continue
					}
					key := d.Route.Namespace + "/" + d.Route.Name
					if o, dup := origin[key]; dup {
						problems = append(problems, fmt.Sprintf("%s: %s: metadata.name: also defined in %s", f, key, o))
						continue
					}
					origin[key] = f
					routes = append(routes, d.Route)
				}
			}
			if len(pools) == 0 && !havePools {
				pools = []model.Pool{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}, {CIDR: netip.MustParsePrefix("::/0")}}
			}
			state, results := translate.Build(routes, translate.Options{Pools: pools})
			for _, r := range results {
				for _, p := range r.Problems {
					problems = append(problems, fmt.Sprintf("%s: %s: %s: %s", origin[r.Key()], r.Key(), p.Field, p.Detail))
				}
			}
			if len(problems) > 0 {
				for _, p := range problems {
					fmt.Fprintln(out, p)
				}
				return &exitError{code: 1, msg: fmt.Sprintf("%d problem(s) in %d file(s)", len(problems), len(files))}
			}
			poolNote := ""
			if len(pools) == 2 && !havePools && configs == 0 {
				poolNote = " (VIP pools not checked: no config given)"
			}
			fmt.Fprintf(out, "ok: %d file(s), %d LBRoute(s), %d virtual service(s), %d config(s)%s\n",
				len(files), len(routes), len(state.Services), configs, poolNote)
			return nil
		},
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "agent config whose vipPools apply")
	return cmd
}

// isAgentConfig tells an agent config file from LBRoute manifests: it is a
// single YAML document with no kind.
func isAgentConfig(data []byte) bool {
	var probe map[string]any
	if err := yaml.Unmarshal(data, &probe); err != nil || probe == nil {
		return false
	}
	_, hasKind := probe["kind"]
	_, hasAPIVersion := probe["apiVersion"]
	return !hasKind && !hasAPIVersion
}
