// Package agentproc runs the real edgeagent binary as a process inside a
// namespace of the BGP test bed (internal/testbed), the way an operator
// runs it on an edge node: built once per test binary, started with
// `ip netns exec`, stopped with SIGKILL or SIGTERM, and asked for its state
// through `edgeagent status -o json`. The end-to-end suites (test/bgpe2e,
// test/e2e, test/healthe2e) share it.
package agentproc

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arraynetworks/edgeagent/internal/racecheck"
	"github.com/arraynetworks/edgeagent/internal/testbed"
	"github.com/arraynetworks/edgeagent/status"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Binary builds cmd/edgeagent once per test binary and returns its path.
// EDGEAGENT_E2E_RACE=1 builds it with the race detector (the agent's log is
// then checked for reported races when it stops).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edgeagent-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "edgeagent")
		// Script is <root>/hack/testbed/topology.sh.
		root := filepath.Dir(filepath.Dir(filepath.Dir(testbed.Script(t))))
		args := []string{"build", "-o", binary}
		if os.Getenv("EDGEAGENT_E2E_RACE") == "1" {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/edgeagent")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// Agent is one edgeagent process in a namespace of the bed.
type Agent struct {
	Config string // the config file it runs with
	Log    string // its combined stdout and stderr
	Cmd    *exec.Cmd
	Done   chan struct{} // closed when the process has exited

	t     testing.TB
	bed   *testbed.Bed
	ns    string
	start time.Time
}

// Start runs `edgeagent run --config config flags...` in namespace ns
// ("edge") and stops it (SIGKILL) when the test ends; on failure the tail
// of its log is printed.
func Start(t testing.TB, bed *testbed.Bed, ns, config string, flags ...string) *Agent {
	t.Helper()
	a := &Agent{t: t, bed: bed, ns: ns, Config: config, Done: make(chan struct{})}
	a.Log = filepath.Join(filepath.Dir(config), fmt.Sprintf("agent-%d.log", time.Now().UnixNano()))
	f, err := os.Create(a.Log)
	if err != nil {
		t.Fatal(err)
	}
	a.Cmd = bed.Command(ns, append([]string{Binary(t), "run", "--config", config}, flags...)...)
	a.Cmd.Stdout, a.Cmd.Stderr = f, f
	a.start = time.Now()
	if err := a.Cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	go func() {
		_ = a.Cmd.Wait()
		f.Close()
		close(a.Done)
	}()
	t.Cleanup(func() {
		a.Kill()
		if races := racecheck.Unexpected(a.ReadLog()); len(races) > 0 {
			t.Errorf("the race detector reported a data race in the agent:\n%s", races[0])
		}
		if t.Failed() {
			s := a.ReadLog()
			if len(s) > 15000 {
				s = s[len(s)-15000:]
			}
			t.Logf("--- agent log %s (tail)\n%s", a.Log, s)
		}
	})
	return a
}

// Started is when the process was started.
func (a *Agent) Started() time.Time { return a.start }

// PID is the process id of `ip netns exec`, which execs the agent, so it
// is the agent's own PID.
func (a *Agent) PID() int { return a.Cmd.Process.Pid }

// ReadLog returns the log so far.
func (a *Agent) ReadLog() string {
	data, _ := os.ReadFile(a.Log)
	return string(data)
}

// Kill sends SIGKILL and waits for the exit.
func (a *Agent) Kill() {
	if a.Cmd.Process != nil {
		_ = a.Cmd.Process.Kill()
	}
	<-a.Done
}

// Term sends SIGTERM and waits up to timeout for the exit; it returns the
// exit code, or an error when the agent did not exit in time.
func (a *Agent) Term(timeout time.Duration) (int, error) {
	if err := a.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, err
	}
	select {
	case <-a.Done:
		return a.Cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("agent did not exit within %s of SIGTERM", timeout)
	}
}

// Alive reports whether the process is still running.
func (a *Agent) Alive() bool {
	select {
	case <-a.Done:
		return false
	default:
		return true
	}
}

// Status asks the running agent through the CLI, as an operator would.
func (a *Agent) Status() (status.Report, error) {
	var rep status.Report
	out, err := a.bed.Exec(a.ns, Binary(a.t), "status", "-o", "json", "--config", a.Config)
	if err != nil {
		return rep, fmt.Errorf("%v: %s", err, out)
	}
	err = json.Unmarshal([]byte(out), &rep)
	return rep, err
}

// Neighbor returns the status of the session with addr (a zero value with
// LastError set when the status cannot be read).
func (a *Agent) Neighbor(addr string) status.Neighbor {
	rep, err := a.Status()
	if err != nil {
		return status.Neighbor{LastError: "status: " + err.Error()}
	}
	for _, n := range rep.Neighbors {
		if n.Address == addr {
			return n
		}
	}
	return status.Neighbor{}
}
