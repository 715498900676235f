package healthcheck

// Verdict is the rise/fall state of one probed target. A target starts
// presumed healthy (as HAProxy and the APV do) so that a restarting agent
// does not pull every real out of the dataplane before the first probes
// finish; it turns unhealthy after fall consecutive failures and healthy
// again after rise consecutive successes.
type Verdict struct {
	Healthy bool
	// streak counts consecutive results that contradict Healthy.
	streak int
}

// NewVerdict is the initial verdict: healthy.
func NewVerdict() Verdict { return Verdict{Healthy: true} }

// Observe folds one probe result into the verdict and reports whether
// Healthy flipped. rise and fall below 1 count as 1.
func (v Verdict) Observe(ok bool, rise, fall int) (Verdict, bool) {
	if ok == v.Healthy {
		v.streak = 0
		return v, false
	}
	need := max(fall, 1)
	if !v.Healthy {
		need = max(rise, 1)
	}
	v.streak++
	if v.streak < need {
		return v, false
	}
	return Verdict{Healthy: ok}, true
}
