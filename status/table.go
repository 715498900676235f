package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable renders a report for people: a neighbor table in the spirit of
// `birdc show protocols`, then the virtual services with their reals.
func WriteTable(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	ready := "ready"
	if !r.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(tw, "Node %s (%s mode), edgeagent %s, %s\n", r.Node, r.Mode, r.Version, ready)
	for _, d := range r.Degraded {
		fmt.Fprintf(tw, "  degraded: %s\n", d)
	}

	fmt.Fprintf(tw, "\nBGP neighbors\n")
	if len(r.Neighbors) == 0 {
		fmt.Fprintf(tw, "  (none)\n")
	} else {
		fmt.Fprintf(tw, "Neighbor\tASN\tState\tSince\tReceived\tAccepted\tAdvertised\tInfo\n")
		for _, n := range r.Neighbors {
			since := "-"
			if n.State == "established" {
				since = (time.Duration(n.UptimeSeconds) * time.Second).String()
			}
			info := n.LastError
			if n.GracefulRestart && info == "" {
				info = "graceful restart"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%s\n", n.Address, n.ASN, n.State, since, n.Received, n.Accepted, n.Advertised, info)
		}
	}
	if len(r.LearnedRoutes) > 0 {
		fmt.Fprintf(tw, "\nLearned routes (in the kernel)\n")
		for _, lr := range r.LearnedRoutes {
			note := ""
			if lr.ShadowedBy != "" {
				note = "\tfallback: the kernel prefers " + lr.ShadowedBy
			}
			fmt.Fprintf(tw, "  %s\tvia %s\tmetric %d%s\n", lr.Prefix, strings.Join(lr.NextHops, ", "), lr.Metric, note)
		}
	}

	if dp := r.Dataplane; dp != nil {
		if dp.Backend == "nftables" {
			fmt.Fprintf(tw, "\nDataplane: %s (%s), backend nftables (table %s), %d elements\n", dp.Interface, dp.InterfaceKind, dp.NFTablesTable, dp.Rules)
		} else {
			fmt.Fprintf(tw, "\nDataplane: %s (%s), backend iptables, iptables %s (%s), %d rules\n", dp.Interface, dp.InterfaceKind, dp.IPTablesMode, dp.IPTablesModeReason, dp.Rules)
		}
		for _, f := range dp.Failures {
			fmt.Fprintf(tw, "  FAILING since %s\t%s\t%s\n", f.Since.UTC().Format(time.RFC3339), f.Step, f.Error)
		}
		for _, w := range dp.Warnings {
			fmt.Fprintf(tw, "  WARNING\t%s\n", w)
		}
	}

	fmt.Fprintf(tw, "\nVirtual services\n")
	if len(r.VirtualServices) == 0 {
		fmt.Fprintf(tw, "  (none)\n")
	} else {
		fmt.Fprintf(tw, "Key\tName\tFrontend\tPolicy\tReals up\tProgrammed\tAdvertised\n")
		for _, vs := range r.VirtualServices {
			up := 0
			for _, rl := range vs.Reals {
				if rl.Healthy && !rl.Terminating {
					up++
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s %s:%d\t%s\t%d/%d\t%s\t%s\n", vs.Key, vs.Name, vs.Protocol, vs.VIP, vs.Port,
				vs.Policy, up, len(vs.Reals), yesNo(vs.Programmed), yesNo(vs.Advertised))
			for _, rl := range vs.Reals {
				state := "up"
				switch {
				case rl.Terminating:
					state = "draining"
				case !rl.Healthy:
					state = "DOWN"
				}
				extra := ""
				if rl.LastResult != "" {
					extra = " (" + rl.LastResult + ")"
				}
				fmt.Fprintf(tw, "  real\t\t%s:%d\tweight %d\t%s%s\t\t\n", rl.IP, rl.Port, rl.Weight, state, extra)
			}
		}
	}

	var rejected []LBRoute
	for _, lr := range r.LBRoutes {
		if !lr.Accepted {
			rejected = append(rejected, lr)
		}
	}
	if len(rejected) > 0 || len(r.SourceErrors) > 0 {
		fmt.Fprintf(tw, "\nRejected input\n")
		for _, lr := range rejected {
			for _, p := range lr.Problems {
				fmt.Fprintf(tw, "  %s\t%s\t%s: %s\n", lr.Key, p.Reason, p.Field, p.Detail)
			}
		}
		for _, e := range r.SourceErrors {
			fmt.Fprintf(tw, "  %s\t\t%s\n", e.Source, e.Error)
		}
	}

	if r.Mode == "kubernetes" {
		conn := "connected"
		if !r.APIServer.Connected {
			conn = "DISCONNECTED"
		}
		fmt.Fprintf(tw, "\nAPI server: %s, %d reconnects, last event %.0fs ago\n", conn, r.APIServer.Reconnects, r.APIServer.LastEventAgeSeconds)
	}
	for _, d := range r.APV {
		up := "up"
		if !d.Up {
			up = "DOWN"
		}
		ha := d.HAState
		if d.HAUnit != "" {
			ha += " (" + d.HAUnit + ")"
		}
		fmt.Fprintf(tw, "APV %s (%s): %s, HA %s, in sync: %s %s\n", d.Name, d.URL, up, ha, yesNo(d.InSync), d.LastError)
		for _, o := range d.NormalizesDifferently {
			fmt.Fprintf(tw, "  reads back differently, not rewritten: %s\n", o)
		}
	}
	if ev := r.APVEvents; ev != nil {
		fmt.Fprintf(tw, "APV events to %s: %d delivered, %d failed, %d dropped, %d queued %s\n", ev.SinkURL, ev.Delivered, ev.Failed, ev.Dropped, ev.Queued, ev.LastError)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
