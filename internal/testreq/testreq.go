// Package testreq decides what a test does when something it needs is not
// there (root, a daemon, a binary, a built artefact): outside CI it skips
// and says what is missing; in CI, or under `make test`, it fails, so a
// green run can never be a pile of skips.
package testreq

import (
	"fmt"
	"os"
	"testing"
)

// Strict reports whether a missing prerequisite must fail the test: with
// CI=true (CI systems set it) or EDGEAGENT_REQUIRE_ALL=1 (make test sets
// it, after installing and building everything the tests need).
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("EDGEAGENT_REQUIRE_ALL") == "1"
}

// Missing skips the test with the reason, or fails it when Strict.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("missing prerequisite (CI=true or EDGEAGENT_REQUIRE_ALL=1: not skipped): %s", msg)
	}
	t.Skipf("skipped: %s", msg)
}

// Root skips (or fails) unless the test runs as root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root: %s", why)
	}
}
