// Package importrules holds the allowed imports between the project's
// packages — the data flow of docs/DESIGN.md: watcher → translate → the
// reconcilers (dataplane, bgp, apv, healthcheck) → agent, which alone
// assembles the /status document — and checks a source tree against them.
// Its test runs the check on the repository, so a change that makes the
// flow go backwards fails `make test`.
package importrules

import (
	"fmt"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Module is the project's module path.
const Module = "github.com/arraynetworks/edgeagent"

// Rules lists, for the packages it names (paths relative to the module),
// the project packages their non-test files may import; a package may also
// import its own subpackages. Packages not listed (agent, cmd, admin, the
// test harnesses under internal/, hack/) may import anything.
var Rules = map[string][]string{
	// The vocabulary everyone shares imports nothing of the project.
	"model":  {},
	"status": {},
	"config": {"model"},
	// Translation reads LBRoutes and what the watcher saw, nothing after it.
	"translate": {"api/v1alpha1", "model"},
	// The watcher hands over snapshots in its own and model's terms.
	"watcher": {"api/v1alpha1", "model"},
	// The cluster's status writer: what the agent reports (its Reporter),
	// written as LBRouteReports, LBRoute status and EdgeNodeStatus; it reads
	// the cluster through the watcher's informers; its option defaults are
	// config's, as the reconcilers' are.
	"kubestatus": {"api/applyconfiguration/api/v1alpha1", "api/v1alpha1", "config", "model", "status", "translate", "watcher"},
	// The reconcilers return their own status types; the agent converts.
	"dataplane": {"config", "model", "dataplane/frontends", "dataplane/slots"},
	// The nftables rules backend, behind dataplane's Rules seam.
	"dataplane/nftables":  {"model", "dataplane/frontends", "dataplane/slots"},
	"dataplane/frontends": {"model"},
	"dataplane/slots":     {},
	"bgp":                 {"config", "model"},
	"apv":                 {"config", "model"},
	"apv/cesink":          {"apv", "config", "model"},
	"apv/apvemu":          {},
	"healthcheck":         {"config", "model", "version"},
	// The edges.
	"api/v1alpha1": {},
	"version":      {},
	"metrics":      {"version"},
	"admin":        {"status"},
}

// Exceptions are single files allowed an import their package's rule
// forbids, each with the reason; an exception no longer used is reported
// too, so the list only shrinks.
var Exceptions = map[string]map[string]string{}

// Check returns every import in the non-test Go files under root (a
// checkout of the module) that Rules forbid, and every unused exception.
func Check(root string) ([]string, error) {
	var problems []string
	used := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		allowed, ruled := Rules[rel]
		if !ruled {
			return nil
		}
		pkg, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		// Files of every GOOS count: engine_linux.go is as much the
		// package as the rest.
		files := slices.Concat(pkg.GoFiles, pkg.CgoFiles, pkg.IgnoredGoFiles)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(path, f), nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			file := rel + "/" + f
			for _, imp := range af.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				dep, ok := strings.CutPrefix(p, Module+"/")
				if !ok || dep == rel || strings.HasPrefix(dep, rel+"/") || slices.Contains(allowed, dep) {
					continue
				}
				if _, ok := Exceptions[file][dep]; ok {
					used[file+" "+dep] = true
					continue
				}
				problems = append(problems, fmt.Sprintf("%s imports %s: package %s may import only %v of the project", file, dep, rel, allowed))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for file, deps := range Exceptions {
		for dep := range deps {
			if !used[file+" "+dep] {
				problems = append(problems, fmt.Sprintf("exception %s → %s is no longer used: remove it from importrules.Exceptions", file, dep))
			}
		}
	}
	slices.Sort(problems)
	return problems, nil
}
