// Package golden compares test output with files under testdata/: one
// helper for every golden test, with the -update flag to rewrite them and
// a unified diff on mismatch, so a change in rendering shows up as a
// reviewed diff.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/pmezard/go-difflib/difflib"
)

var update = flag.Bool("update", false, "rewrite the golden files with what the tests produce (review with git diff)")

// Update reports whether the test binary runs with -update.
func Update() bool { return *update }

// Assert compares got with the golden file at path (relative to the test's
// package directory, typically testdata/NAME.golden) and reports a
// mismatch as a unified diff from the file to got. With -update it writes
// got to path instead (creating its directory).
func Assert(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		err := os.MkdirAll(filepath.Dir(path), 0o755)
		if err == nil {
			err = os.WriteFile(path, got, 0o644)
		}
		if err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run '^%s$' -update in this package writes it)", err, t.Name())
		return
	}
	if bytes.Equal(got, want) {
		return
	}
	t.Errorf("output differs from %s (go test -run '^%s$' -update accepts it):\n%s", path, t.Name(), Diff(path, want, got))
}

// AssertString is Assert for a string.
func AssertString(t testing.TB, path, got string) {
	t.Helper()
	Assert(t, path, []byte(got))
}

// Diff is a unified diff from want (the file at path) to got, with three
// lines of context; a difference in the final newline alone is said so.
func Diff(path string, want, got []byte) string {
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(want)), B: difflib.SplitLines(string(got)),
		FromFile: path, ToFile: "got", Context: 3,
	})
	if err != nil {
		return err.Error()
	}
	if d == "" || bytes.Equal(bytes.TrimRight(want, "\n"), bytes.TrimRight(got, "\n")) {
		return d + "(the two differ only in trailing newlines)\n"
	}
	return d
}
