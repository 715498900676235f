package healthcheck

import (
	"net/netip"
	"testing"
	"time"
)

var (
	vipA = netip.MustParseAddr("10.200.0.1")
	vipB = netip.MustParseAddr("10.200.0.2")
)

func TestDamperFirstSightAndQuietChangesAreImmediate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := NewDamper(10 * time.Second)
	got, due := d.Update(t0, map[netip.Addr]bool{vipA: true, vipB: false})
	if !got[vipA] || got[vipB] || !due.IsZero() {
		t.Fatalf("first sight: %v due %v, want A up, B down, nothing held", got, due)
	}
	// All reals of A die: withdrawn at once (no change in the last hold).
	got, due = d.Update(t0.Add(time.Minute), map[netip.Addr]bool{vipA: false, vipB: false})
	if got[vipA] || !due.IsZero() {
		t.Fatalf("A down after a quiet minute: %v due %v, want withdrawn now", got, due)
	}
	// One comes back after more than the hold: announced at once.
	got, _ = d.Update(t0.Add(time.Minute+11*time.Second), map[netip.Addr]bool{vipA: true, vipB: false})
	if !got[vipA] {
		t.Fatal("A back after the hold: still withdrawn")
	}
}

func TestDamperHoldsChangesWithinHold(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := NewDamper(10 * time.Second)
	d.Update(t0, map[netip.Addr]bool{vipA: true})
	d.Update(t0.Add(time.Second), map[netip.Addr]bool{vipA: false}) // withdrawn at t0+1
	got, due := d.Update(t0.Add(2*time.Second), map[netip.Addr]bool{vipA: true})
	if got[vipA] {
		t.Fatal("re-announced 1s after a withdrawal, hold is 10s")
	}
	if want := t0.Add(11 * time.Second); !due.Equal(want) {
		t.Fatalf("due %v, want %v (last change + hold)", due, want)
	}
	// Wanted state goes back before it is due: nothing held any more.
	got, due = d.Update(t0.Add(3*time.Second), map[netip.Addr]bool{vipA: false})
	if got[vipA] || !due.IsZero() {
		t.Fatalf("%v due %v, want withdrawn and nothing held", got, due)
	}
	got, _ = d.Update(t0.Add(5*time.Second), map[netip.Addr]bool{vipA: true})
	if got[vipA] {
		t.Fatal("held change applied early")
	}
	got, _ = d.Update(t0.Add(11*time.Second), map[netip.Addr]bool{vipA: true})
	if !got[vipA] {
		t.Fatal("held change not applied when due")
	}
}

// TestDamperFlapping feeds a VIP whose health flips every second for ten
// minutes and checks the announcement changes at most once per hold period.
func TestDamperFlapping(t *testing.T) {
	const hold = 10 * time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, step := range []time.Duration{time.Second, 300 * time.Millisecond, 7 * time.Second} {
		d := NewDamper(hold)
		var changes []time.Time
		prev, _ := d.Update(t0, map[netip.Addr]bool{vipA: true, vipB: true})
		for i := 1; i <= int(10*time.Minute/step); i++ {
			now := t0.Add(time.Duration(i) * step)
			got, _ := d.Update(now, map[netip.Addr]bool{vipA: i%2 == 0, vipB: true})
			if got[vipA] != prev[vipA] {
				changes = append(changes, now)
			}
			if !got[vipB] {
				t.Fatalf("steady VIP B withdrawn at %v: damping must touch only the flapping VIP", now.Sub(t0))
			}
			prev = got
		}
		if len(changes) < 2 {
			t.Fatalf("step %v: %d changes in 10 minutes; the route must still follow health, only slower", step, len(changes))
		}
		for i := 1; i < len(changes); i++ {
			if gap := changes[i].Sub(changes[i-1]); gap < hold {
				t.Fatalf("step %v: changes %v apart (%v and %v), want at least %v", step, gap, changes[i-1].Sub(t0), changes[i].Sub(t0), hold)
			}
		}
	}
}

func TestDamperForgetsVIPsThatLeft(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := NewDamper(10 * time.Second)
	d.Update(t0, map[netip.Addr]bool{vipA: true})
	d.Update(t0.Add(time.Second), map[netip.Addr]bool{vipA: false})
	d.Update(t0.Add(2*time.Second), map[netip.Addr]bool{}) // LBRoute deleted
	// Re-created: a new VIP, announced at once.
	got, due := d.Update(t0.Add(3*time.Second), map[netip.Addr]bool{vipA: true})
	if !got[vipA] || !due.IsZero() {
		t.Fatalf("re-created VIP: %v due %v, want announced at once", got, due)
	}
}

func TestDamperZeroHoldFollowsHealth(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := NewDamper(0)
	for i := range 10 {
		want := i%2 == 0
		got, due := d.Update(t0.Add(time.Duration(i)*time.Millisecond), map[netip.Addr]bool{vipA: want})
		if got[vipA] != want || !due.IsZero() {
			t.Fatalf("step %d: got %v due %v, want %v", i, got[vipA], due, want)
		}
	}
}

// During the start-up grace health changes pass at once and start no hold:
// a VIP withdrawn because the first probes ran before the pod routes were
// learned comes back as soon as the reals answer.
func TestDamperStartupGrace(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := NewDamper(10 * time.Second)
	d.SetGrace(t0.Add(10 * time.Second))
	d.Update(t0, map[netip.Addr]bool{vipA: true})
	if got, _ := d.Update(t0.Add(2*time.Second), map[netip.Addr]bool{vipA: false}); got[vipA] {
		t.Fatal("withdrawal held during the grace")
	}
	if got, due := d.Update(t0.Add(3*time.Second), map[netip.Addr]bool{vipA: true}); !got[vipA] || !due.IsZero() {
		t.Fatalf("recovery held during the grace: %v due %v", got, due)
	}
	// After the grace, damping is back.
	d.Update(t0.Add(20*time.Second), map[netip.Addr]bool{vipA: false})
	if got, due := d.Update(t0.Add(21*time.Second), map[netip.Addr]bool{vipA: true}); got[vipA] || due != t0.Add(30*time.Second) {
		t.Fatalf("after the grace: %v due %v, want held until t0+30s", got, due)
	}
}
