package importrules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The repository keeps the data flow one way.
func TestRepository(t *testing.T) {
	problems, err := Check(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// Check finds a forbidden import in a non-test file, ignores test files
// and other modules, and reports an exception nobody needs.
func TestCheckFindsViolations(t *testing.T) {
	root := t.TempDir()
	write := func(path, src string) {
		t.Helper()
		path = filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("watcher/kube.go", "package watcher\nimport (\n_ \""+Module+"/translate\"\n_ \""+Module+"/model\"\n_ \"k8s.io/client-go/rest\"\n)\n")
	write("watcher/kube_test.go", "package watcher\nimport _ \""+Module+"/status\"\n")
	write("model/model.go", "package model\nimport _ \""+Module+"/config\"\n")
	write("agent/agent.go", "package agent\nimport _ \""+Module+"/status\"\n")
	problems, err := Check(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"model/model.go imports config", "watcher/kube.go imports translate"}
	var got []string
	for _, p := range problems {
		if strings.HasPrefix(p, "exception ") {
			continue // the repository's exceptions, unused in this tree
		}
		got = append(got, p[:strings.Index(p, ":")])
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems %q, want %q", problems, want)
	}
	var stale int
	for _, p := range problems {
		if strings.HasPrefix(p, "exception ") && strings.HasSuffix(p, "is no longer used: remove it from importrules.Exceptions") {
			stale++
		}
	}
	if n := countExceptions(); stale != n {
		t.Errorf("%d unused exceptions reported, want all %d (none applies in this tree): %q", stale, n, problems)
	}
}

func countExceptions() int {
	n := 0
	for _, deps := range Exceptions {
		n += len(deps)
	}
	return n
}
