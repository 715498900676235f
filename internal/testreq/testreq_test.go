package testreq

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Missing fails under CI=true and skips otherwise: run a test that calls it
// in a child process both ways and read the verdicts.
func TestMissingSkipsOrFails(t *testing.T) {
	if os.Getenv("TESTREQ_CHILD") == "1" {
		Missing(t, "the frobnicator")
		return
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"CI=", "EDGEAGENT_REQUIRE_ALL="}, "--- SKIP"},
		{[]string{"CI=true", "EDGEAGENT_REQUIRE_ALL="}, "--- FAIL"},
		{[]string{"CI=", "EDGEAGENT_REQUIRE_ALL=1"}, "--- FAIL"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingSkipsOrFails$", "-test.v")
		cmd.Env = append(append(os.Environ(), "TESTREQ_CHILD=1"), tc.env...)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "the frobnicator") {
			t.Errorf("with %v: want %s naming what is missing, got:\n%s", tc.env, tc.want, out)
		}
	}
}
