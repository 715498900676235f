// Package version carries the build's identity, set at link time:
//
//	go build -ldflags "-X github.com/arraynetworks/edgeagent/version.Version=v0.1.0 -X ...Commit=abc"
package version

import "runtime/debug"

// Set by the linker; the defaults describe a plain `go build`.
var (
	Version = "dev"
	Commit  = ""
)

// String is "VERSION (COMMIT)", falling back to the VCS revision Go embeds.
func String() string {
	c := Commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					c = s.Value[:12]
				}
			}
		}
	}
	if c == "" {
		return Version
	}
	return Version + " (" + c + ")"
}
