package a

import (
	"flag"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite") // want `an -update flag of its own`

func waitFor(t *testing.T, cond func() bool) {
	deadline := time.Now().Add(time.Second)
	for !cond() { // want `a hand-written wait loop`
		if time.Now().After(deadline) {
			t.Fatal("timeout")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitConnected(t *testing.T, connected func() bool) {
	start := time.Now()
	for connected() && time.Since(start) < time.Second { // want `a hand-written wait loop`
		time.Sleep(time.Millisecond)
	}
}

// Flapping something for a while is not a wait.
func flap(t *testing.T, toggle func()) {
	start := time.Now()
	for time.Since(start) < time.Second {
		time.Sleep(10 * time.Millisecond)
		toggle()
	}
}

// A helper that returns an error (a start-up retried elsewhere) is not a
// test's wait.
func ready(check func() bool) bool {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if check() {
			return true
		}
	}
	return false
}

// A background sampler started from a test runs in its own function.
func sample(t *testing.T, stop chan struct{}) {
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			time.Sleep(time.Millisecond)
		}
	}()
}
