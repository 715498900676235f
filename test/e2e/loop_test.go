package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arraynetworks/edgeagent/internal/testbed"
)

// loop is a client sending HTTP requests to one VIP back to back from the
// bed's client namespace (a new curl, so a new TCP connection, each time),
// counting those that fail or answer something other than a pod's name.
type loop struct {
	vip   string
	want  map[string]bool // acceptable bodies ("pod1", "pod2")
	stop  chan struct{}
	wg    sync.WaitGroup
	total atomic.Int64
	fails atomic.Int64

	mu       sync.Mutex
	seen     map[string]int
	sample   []string  // the first failures, for the log
	lastFail time.Time // when the latest failed request ended
}

// startLoop starts the requests; stopLoop ends them and returns the loop.
func startLoop(bed *testbed.Bed, vip string, want ...string) *loop {
	l := &loop{vip: vip, want: map[string]bool{}, stop: make(chan struct{}), seen: map[string]int{}}
	for _, w := range want {
		l.want[w] = true
	}
	l.wg.Go(func() {
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			// --max-time 2: a request the dataplane loses would otherwise
			// hang for curl's default of minutes.
			out, err := bed.Exec("client", "curl", "-sS", "--max-time", "2", "http://"+vip+"/")
			body := strings.TrimSpace(out)
			l.total.Add(1)
			l.mu.Lock()
			if err != nil || !l.want[body] {
				l.fails.Add(1)
				l.lastFail = time.Now()
				if len(l.sample) < 5 {
					l.sample = append(l.sample, fmt.Sprintf("%s: %v %q", time.Now().Format("15:04:05.000"), err, body))
				}
			} else {
				l.seen[body]++
			}
			l.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	return l
}

func (l *loop) stopLoop() *loop {
	close(l.stop)
	l.wg.Wait()
	return l
}

func (l *loop) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := fmt.Sprintf("%s: %d requests, %d failed, answered by %v", l.vip, l.total.Load(), l.fails.Load(), l.seen)
	if len(l.sample) > 0 {
		s += "; first failures: " + strings.Join(l.sample, " | ")
	}
	return s
}

// loops runs one loop per VIP of the suite's good routes.
type loops []*loop

func (ls loops) stop() loops {
	for _, l := range ls {
		l.stopLoop()
	}
	return ls
}

// lastFailure is when the latest failed request ended (zero: none failed).
func (l *loop) lastFailure() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastFail
}
