package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what the helper reports.
type recorder struct {
	testing.TB
	msgs []string
}

func (r *recorder) Helper()      {}
func (r *recorder) Name() string { return "TestX" }
func (r *recorder) Errorf(f string, a ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(f, a...))
}
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...) }

func TestAssert(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.golden")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	r := &recorder{TB: t}
	Assert(r, path, []byte("one\ntwo\nthree\n"))
	if len(r.msgs) != 0 {
		t.Errorf("equal output reported: %q", r.msgs)
	}

	r = &recorder{TB: t}
	AssertString(r, path, "one\n2\nthree\n")
	if len(r.msgs) != 1 {
		t.Fatalf("mismatch reported %d times, want once: %q", len(r.msgs), r.msgs)
	}
	for _, want := range []string{"--- " + path, "+++ got", "-two", "+2", " one", "-update"} {
		if !strings.Contains(r.msgs[0], want) {
			t.Errorf("mismatch report lacks %q:\n%s", want, r.msgs[0])
		}
	}

	r = &recorder{TB: t}
	AssertString(r, path, "one\ntwo\nthree")
	if len(r.msgs) != 1 || !strings.Contains(r.msgs[0], "only in trailing newlines") {
		t.Errorf("a missing final newline: %q", r.msgs)
	}

	r = &recorder{TB: t}
	AssertString(r, filepath.Join(t.TempDir(), "absent.golden"), "x")
	if len(r.msgs) != 1 || !strings.Contains(r.msgs[0], "-update in this package writes it") {
		t.Errorf("a missing file: %q", r.msgs)
	}
}

func TestUpdateWrites(t *testing.T) {
	*update = true
	t.Cleanup(func() { *update = false })
	path := filepath.Join(t.TempDir(), "testdata", "new.golden")
	r := &recorder{TB: t}
	AssertString(r, path, "fresh\n")
	if len(r.msgs) != 0 {
		t.Fatalf("update reported: %q", r.msgs)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "fresh\n" {
		t.Errorf("golden file after -update: %q, %v", b, err)
	}
}
