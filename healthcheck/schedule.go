package healthcheck

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/arraynetworks/edgeagent/model"
)

// targetKey identifies one thing to probe: a real's address under one check
// spec. A real shared by several virtual services with the same check is
// probed once; with different checks, once per check.
type targetKey struct {
	addr netip.AddrPort
	spec string
}

// specKey renders every field of a check that affects probing or its
// verdict, so equal keys mean interchangeable checks.
func specKey(h model.HealthSpec) string {
	return fmt.Sprintf("%s|%s|%s|%d|%d|%q|%q|%v", h.Type, h.Interval, h.Timeout, h.Rise, h.Fall, h.Path, h.Host, h.ExpectedStatus)
}

// target is one probed (real, check) with its verdict and schedule.
type target struct {
	key     targetKey
	spec    model.HealthSpec
	request []byte // HTTP checks: the GET to send

	next     time.Time // next probe start
	index    int       // position in the queue
	inflight bool

	verdict Verdict
	last    string    // last probe result; "" before the first
	since   time.Time // when verdict.Healthy took its current value
}

// firstDelay spreads first probes over one interval, so thousands of reals
// added at once (an agent start, a large LBRoute) do not probe in lockstep
// and keep their spread afterwards (each then probes every interval from
// its own phase). The seed is random per prober, so agents on different
// nodes do not line up on the same real either.
func firstDelay(seed maphash.Seed, k targetKey, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	var h maphash.Hash
	h.SetSeed(seed)
	b := k.addr.Addr().As16()
	h.Write(b[:])
	h.WriteByte(byte(k.addr.Port() >> 8))
	h.WriteByte(byte(k.addr.Port()))
	h.WriteString(k.spec)
	return time.Duration(h.Sum64() % uint64(interval))
}

// advance moves a due probe time to the first interval boundary after now,
// keeping the target's phase; probes missed while the prober was stalled are
// skipped, not run in a burst.
func advance(next, now time.Time, interval time.Duration) time.Time {
	if interval <= 0 {
		interval = time.Second
	}
	if next.After(now) {
		return next
	}
	missed := now.Sub(next)/interval + 1
	return next.Add(missed * interval)
}

// queue is a min-heap of targets by next probe time (container/heap).
type queue []*target

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].next.Before(q[j].next) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *queue) Push(x any) {
	t := x.(*target)
	t.index = len(*q)
	*q = append(*q, t)
}
func (q *queue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	t.index = -1
	return t
}
