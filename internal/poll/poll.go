// Package poll is the one way tests wait for a condition: Until calls the
// condition until it holds and fails the test, with what it waited for and
// the condition's last word, when it does not within the timeout.
//
// wait.PollUntilContextTimeout (apimachinery) has the loop but not the
// failure report a test needs (what it waited for and why the last attempt
// said no), which is all this package adds.
package poll

import (
	"testing"
	"time"
)

// DefaultInterval is how often Until checks: often enough for in-process
// conditions, rare enough for conditions that run a command (birdc, ip,
// kubectl) not to load the machine.
const DefaultInterval = 50 * time.Millisecond

// Poller checks a condition at a fixed interval.
type Poller struct{ interval time.Duration }

// Every returns a Poller checking every interval: for conditions whose
// moment is measured (a lower bound on how long something took), where the
// default interval would add up to 50 ms of error.
func Every(interval time.Duration) Poller { return Poller{interval: max(interval, time.Millisecond)} }

// Until calls cond every DefaultInterval until it reports true; after
// timeout it fails t with what and cond's last detail. cond runs on the
// test's goroutine, at least once. It returns how long the wait took.
func Until(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, detail string)) time.Duration {
	t.Helper()
	return Every(DefaultInterval).Until(t, timeout, what, cond)
}

// Until is the package's Until at p's interval.
func (p Poller) Until(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, detail string)) time.Duration {
	t.Helper()
	ok, detail, took := p.Wait(timeout, cond)
	switch {
	case ok:
	case detail == "":
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	default:
		t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, detail)
	}
	return took
}

// Wait calls cond at p's interval until it reports true or timeout passes,
// and says which, with cond's last detail and how long it waited: for a
// test that reports a miss with t.Errorf and goes on checking.
func (p Poller) Wait(timeout time.Duration, cond func() (ok bool, detail string)) (ok bool, detail string, took time.Duration) {
	start := time.Now()
	for {
		ok, detail := cond()
		if ok || time.Since(start) > timeout {
			return ok, detail, time.Since(start)
		}
		time.Sleep(p.interval)
	}
}

// NoError adapts a condition that reports failure as an error.
func NoError(cond func() error) func() (bool, string) {
	return func() (bool, string) {
		if err := cond(); err != nil {
			return false, err.Error()
		}
		return true, ""
	}
}

// Reason adapts a condition that returns why it does not hold yet, ""
// once it does.
func Reason(cond func() string) func() (bool, string) {
	return func() (bool, string) {
		why := cond()
		return why == "", why
	}
}
