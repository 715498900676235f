package healthcheck

import (
	"net/netip"
	"sync"
	"time"
)

// Damper limits how often health may change a VIP's BGP announcement: after
// a change, the VIP keeps its new state for at least the hold time, so a
// real that flaps every second moves the route at most once per hold period
// instead of on every flap (the rollout flaps kube-vip users report). A
// change is applied at once when the last one is older than the hold time,
// so a VIP whose reals all die is withdrawn immediately and one that
// recovers after a quiet spell returns immediately.
//
// The Damper is pure: the caller passes the time, and it tells the caller
// when a held change becomes due so the caller can come back then.
type Damper struct {
	hold time.Duration

	mu    sync.Mutex
	vips  map[netip.Addr]*damped
	grace time.Time
}

type damped struct {
	up      bool
	changed time.Time // zero: never changed since the VIP appeared
}

// NewDamper returns a damper with the given hold time; zero disables
// damping.
func NewDamper(hold time.Duration) *Damper {
	return &Damper{hold: hold, vips: map[netip.Addr]*damped{}}
}

// SetGrace lets health changes through undamped until t: they do not start
// the hold clock. The agent sets it to its start plus one hold time,
// because at start health is still settling — the first probes can fail
// only because BGP has not yet installed the routes to the pods — and a VIP
// withdrawn by that must not then be held off for a whole hold time.
func (d *Damper) SetGrace(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.grace = t
}

// Update takes, for every VIP in the desired state, whether health says it
// should be announced, and returns whether to announce it now, plus the
// earliest time a change held back now becomes due (zero when none is
// held). A VIP seen for the first time takes its wanted state at once; a
// VIP missing from want is forgotten (its LBRoute went away, which is not a
// health change and is never held).
func (d *Damper) Update(now time.Time, want map[netip.Addr]bool) (map[netip.Addr]bool, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[netip.Addr]bool, len(want))
	var due time.Time
	for vip, w := range want {
		st, ok := d.vips[vip]
		switch {
		case !ok:
			st = &damped{up: w}
			d.vips[vip] = st
		case st.up == w:
		case st.changed.IsZero() || now.Sub(st.changed) >= d.hold:
			st.up, st.changed = w, now
			if now.Before(d.grace) {
				st.changed = time.Time{}
			}
		default:
			at := st.changed.Add(d.hold)
			if due.IsZero() || at.Before(due) {
				due = at
			}
		}
		out[vip] = st.up
	}
	for vip := range d.vips {
		if _, ok := want[vip]; !ok {
			delete(d.vips, vip)
		}
	}
	return out, due
}
