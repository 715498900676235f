package dashboard

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Query is one panel target of a dashboard JSON.
type Query struct {
	Panel string // the panel's title
	Expr  string // PromQL, with the dashboard's variables still in it
}

// Queries lists the Prometheus queries of every panel of a dashboard JSON
// (panels inside collapsed rows included), in panel order. It reads the JSON
// rather than the builder, so what is checked is what ships.
func Queries(dashboardJSON []byte) ([]Query, error) {
	type panel struct {
		Title   string  `json:"title"`
		Type    string  `json:"type"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(dashboardJSON, &d); err != nil {
		return nil, fmt.Errorf("parse dashboard: %w", err)
	}
	var out []Query
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			if p.Type == "row" {
				if err := walk(p.Panels); err != nil {
					return err
				}
				continue
			}
			if len(p.Targets) == 0 {
				return fmt.Errorf("panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("panel %q has an empty query", p.Title)
				}
				out = append(out, Query{Panel: p.Title, Expr: t.Expr})
			}
		}
		return nil
	}
	return out, walk(d.Panels)
}

// Expand replaces the dashboard's variables the way Grafana does with
// "All" agents selected and the given rate interval (a PromQL duration).
func Expand(expr, rateInterval string) string {
	return strings.NewReplacer("$__rate_interval", rateInterval, "$instance", ".*").Replace(expr)
}
