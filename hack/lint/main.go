// Command lint holds the project's own checks, run by `make lint` as a go
// vet tool (go vet -vettool=...), so the go command caches their results
// like vet's own:
//
//   - logkeys: log/slog keys are lowerCamelCase; errors go under "err".
//   - errprefix: an error message does not start with its own package's
//     name (the caller adds the component: "apv: apv: ..." stutters).
//   - testhelpers: golden files go through internal/golden and waits
//     through internal/poll, not a copy of either.
package main

import (
	"github.com/arraynetworks/edgeagent/hack/lint/errprefix"
	"github.com/arraynetworks/edgeagent/hack/lint/logkeys"
	"github.com/arraynetworks/edgeagent/hack/lint/testhelpers"
	"golang.org/x/tools/go/analysis/unitchecker"
)

func main() {
	unitchecker.Main(logkeys.Analyzer, errprefix.Analyzer, testhelpers.Analyzer)
}
