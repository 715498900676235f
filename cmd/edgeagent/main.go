// Command edgeagent is the edge node agent: `edgeagent run` starts it; the
// other subcommands inspect, validate and clean up. See README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "edgeagent:", err)
		os.Exit(exitCode(err))
	}
}
